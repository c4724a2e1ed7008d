"""`jobs.ingest`: bring your own digits into the store as a split (arrays or image files).

sources (array sources: .npy, .npz, Zarr; checks and pixel conversion), files (image files
preprocessed on the workers), graph (the Dask graph writing a split aside), job (orchestration).
"""
