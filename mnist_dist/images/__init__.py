"""Your own digit image files, scored on Dask: `python -m jobs.score --images PATH...`.

`preprocess` (one file → MNIST-style 28x28), `files` (listing, labels, output names),
`tasks` (the pure per-partition worker functions), `spec` (the job's settings), `job` (the
only module that touches the Dask client) and `report` (the `report.json` document).
"""
