"""The prepare job: its spec, the base store, the expanded split (plan, per-partition tasks,
Dask graph), its run and result."""
