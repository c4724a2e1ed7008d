"""Your own digit image files, scored on Dask: `python -m jobs.score --images PATH...`.

`preprocess` (one file → MNIST-style 28x28), `files` (listing, labels, output names),
`tasks` (one file's digit, as the workers compute it), `spec` (the job's settings), `job`
(ingest the files into the run's store, score it with the normal graph; the only module here
that touches the Dask client) and `report` (the report's bounded `images` section).
"""
