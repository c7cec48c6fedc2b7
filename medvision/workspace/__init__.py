"""medvision.workspace (see DESIGN.md)."""
