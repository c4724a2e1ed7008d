"""Your own digit image files, scored on Dask: `python -m jobs.score --images PATH...`.

`preprocess` (one file → MNIST-style 28x28), `files` (listing, labels, output names),
`tasks` (one file's digit and a partition's, as the workers compute them), `staging` (files
into a split on Dask, for `jobs.ingest` too), `spec` (the job's settings), `job` (ingest the
files into the run's store, score it with the normal graph) and `report` (the report's
bounded `images` section). `staging` and `job` are the modules here that touch the Dask client.
"""
