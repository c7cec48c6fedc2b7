"""medvision.annotate (docs/architecture.md says what this layer owns)."""
