"""Data: image I/O, degradations, demo data, folder and WebDataset loaders. Knows nothing of models."""
