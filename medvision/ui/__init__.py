"""medvision.ui (see DESIGN.md)."""
