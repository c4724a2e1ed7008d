"""The score job: its spec, per-partition tasks, Dask graph, throughput sweep and run."""
