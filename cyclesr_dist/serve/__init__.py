"""Using a trained SR network without the training stack: tiled upscaling, export/load, paired evaluation."""
