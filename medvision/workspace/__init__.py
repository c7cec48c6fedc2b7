"""medvision.workspace (docs/architecture.md says what this layer owns)."""
