"""medvision: a desktop radiology workstation."""

__version__ = "0.1.0"
