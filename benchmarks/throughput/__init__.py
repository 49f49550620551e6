"""The pieces of `benchmarks/train_throughput.py` (the entry point, which documents what is measured): the
variants and how each is built, interleaved timing, FLOP counting, peak memory, the scaling estimate, the
multi-process launcher and the printed tables."""
