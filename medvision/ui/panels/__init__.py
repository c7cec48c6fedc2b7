"""medvision.ui.panels"""
