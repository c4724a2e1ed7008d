"""Models: KNN and the ONNX MLP (fit, save, load, predict a NumPy batch). No Dask here."""
