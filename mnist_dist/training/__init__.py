"""The train job: its spec, the checks before it, the scaler, KNN and MLP fits, its run and
result (in this process; TensorFlow only where the MLP trains)."""
