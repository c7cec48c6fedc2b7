"""medvision.ui.app"""
