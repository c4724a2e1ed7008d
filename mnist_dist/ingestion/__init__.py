"""The ingest job (`md.ingest`, `jobs.ingest`): your own digits into the store as a split.

spec (`IngestSpec`), sources (array sources: .npy, .npz, Zarr; readers, checks, checksums),
tasks (per-block pixel and label checks, pure NumPy), graph (the Dask graph of array sources),
result (`IngestResult`), run (`run`: checks, the split built aside and moved in). Image files
are read and preprocessed by `mnist_dist.images` (its `tasks` and `staging`).
"""
