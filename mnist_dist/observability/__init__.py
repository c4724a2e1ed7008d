"""Watching a run from outside: the job's own Prometheus metrics, served by the Dask scheduler."""
