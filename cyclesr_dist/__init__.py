"""cyclesr-dist: CycleSR (unpaired super-resolution) as a distributed training job."""

__version__ = "0.1.0"
