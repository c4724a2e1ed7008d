"""The command line: argument types (`arguments`), one module per job (`score`, `ingest`, …)
and the `mnist-dist` console script (`main`). `python -m jobs.<job>` runs the same `main`."""
