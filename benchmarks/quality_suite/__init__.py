"""The pieces of `benchmarks/quality.py` (the entry point, which documents what is measured): the photographs and
the operators' data (`data`), training runs as CLI subprocesses and their scores (`runs`), the printed tables
(`report`), the leave-one-operator-out column (`heldout`), the joint stage's before/after (`stages`) and time to
quality (`ttq`). `quality_diagnostics.py` and `quality_fits.py` beside it read the same data and runs."""
