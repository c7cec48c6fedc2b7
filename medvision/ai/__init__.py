"""medvision.ai (see DESIGN.md)."""
