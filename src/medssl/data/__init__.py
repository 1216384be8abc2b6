"""Data layer: sources (download, manual, synthetic phantoms) -> cases -> 2D slice stores -> splits."""
