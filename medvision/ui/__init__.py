"""medvision.ui (docs/architecture.md says what this layer owns)."""
