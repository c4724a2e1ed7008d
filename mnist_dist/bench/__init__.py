"""Benchmarks: the matmul roofline, predictor and baseline sweeps, end-to-end Dask scoring
against one process and dask-ml, scaling, worker memory, and the nightly history.

`run.run_bench(BenchSpec(...))` runs them all; `python -m jobs.bench` is its command line.
"""
