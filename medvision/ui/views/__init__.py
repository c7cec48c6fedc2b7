"""medvision.ui.views"""
