"""Face stages: detection, alignment, quality."""
