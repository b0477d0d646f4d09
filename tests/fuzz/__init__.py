"""Coverage-guided fuzz targets, one per parser of outside bytes, with their corpora."""
