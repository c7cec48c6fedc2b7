"""medvision.annotate (see DESIGN.md)."""
