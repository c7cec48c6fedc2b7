"""medvision.ui.annotating"""
