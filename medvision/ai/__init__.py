"""medvision.ai (docs/architecture.md says what this layer owns)."""
