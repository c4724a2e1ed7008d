"""Float32 matrix products through onnxruntime's GEMM (MLAS), one intra-op thread.

On this machine MLAS runs the bound search's (128, 98) x (98, 4,032) products at ~150 GFLOP/s
against OpenBLAS's ~95 (numpy), in the same float32 arithmetic: each entry is a float32 dot
product, its error within γ_k·Σ|terms| whatever the order of the sums (tests/test_knn.py).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from mnist_dist.models.mlp import OrtSettings, session_options

OPSET = 17
# Below this many rows numpy does the product: a session run costs ~35 µs more than a numpy
# call, which outweighs MLAS's faster kernel (at one row: 0.47 vs 1.0 ms for the 14 tiles of
# the MNIST search; at 32 rows MLAS is ahead, 3.8 vs 4.4 ms).
ORT_MIN_ROWS = 24


class OrtMatmul:
    """out (n, w) = a (n, k) @ b (k, w), all float32 and C-contiguous, for any n and w; fewer
    than ORT_MIN_ROWS rows go to numpy (the same float32 arithmetic).

    Runs on the calling thread (one intra-op thread, no spinning). Thread-safe; not picklable
    (an onnxruntime session): build one per process.
    """

    def __init__(self, k: int) -> None:
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["product"])], "matmul",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", k]),
             helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, "w"])],
            [helper.make_tensor_value_info("product", TensorProto.FLOAT, ["n", "w"])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        self.k = k
        self.session = ort.InferenceSession(model.SerializeToString(),
                                            session_options(OrtSettings()),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write a @ b into `out` and return it."""
        n, w = len(a), b.shape[1] if b.ndim == 2 else -1
        for name, array, shape in (("a", a, (n, self.k)), ("b", b, (self.k, w)),
                                   ("out", out, (n, w))):
            if array.dtype != np.float32 or array.shape != shape \
                    or not array.flags.c_contiguous:
                raise ValueError(f"{name} must be C-contiguous float32 of shape {shape}; "
                                 f"got {array.dtype} {array.shape} instead")
        if n < ORT_MIN_ROWS:
            return np.matmul(a, b, out=out)
        binding = self.session.io_binding()
        binding.bind_cpu_input("a", a)
        binding.bind_cpu_input("b", b)
        binding.bind_output("product", "cpu", 0, np.float32, out.shape, out.ctypes.data)
        self.session.run_with_iobinding(binding)
        return out
