"""Your own digit image files: read, preprocessed MNIST-style and staged into a split on Dask.

`preprocess` (one file → MNIST-style 28x28), `files` (listing, labels, output names),
`tasks` (one file's digit and a partition's, as the workers compute them), `staging` (files
into a split on Dask, for `jobs.ingest` and `--images`), `spec` (the `--images` run's settings)
and `report` (the report's bounded `images` section). `staging` is the one module here that
touches the Dask client; the `--images` run itself is `mnist_dist.scoring.images`.
"""
