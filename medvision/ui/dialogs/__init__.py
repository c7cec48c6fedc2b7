"""medvision.ui.dialogs"""
