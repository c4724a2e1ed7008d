"""The export job: its spec, the run's source arrays, per-partition tasks, the Dask DataFrame,
its run and result."""
