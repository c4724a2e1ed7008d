"""Float32 matrix products through onnxruntime's matrix kernels, one intra-op thread.

The bound search's products run here rather than through numpy's BLAS where onnxruntime's
kernels are the faster of the two (which one is depends on the CPU: `jobs.bench` measures
both); either way each entry is a float32 dot product, its error within γ_k·Σ|terms| whatever
the order of the sums (tests/test_knn.py).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from mnist_dist.models.mlp import OrtSettings, session_options

# ONNX IR 8 and opset 17: every onnxruntime since 1.13 runs them.
IR_VERSION = 8
OPSET = 17
FLOAT = 1  # onnx.TensorProto.FLOAT
# Below this many rows numpy does the product: a session run's fixed cost outweighs any
# faster kernel for a few rows.
ORT_MIN_ROWS = 24


class OrtMatmul:
    """out (n, w) = a (n, k) @ b (k, w), all float32 and C-contiguous, for any n and w; fewer
    than ORT_MIN_ROWS rows go to numpy (the same float32 arithmetic).

    Runs on the calling thread (one intra-op thread, no spinning). Thread-safe; not picklable
    (an onnxruntime session): build one per process.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.session = ort.InferenceSession(matmul_model(k), session_options(OrtSettings()),
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


def matmul_model(k: int) -> bytes:
    """The serialized ONNX model `product = MatMul(a, b)`, a float32 (n, k), b (k, w).

    Written field by field in protobuf's wire format (fields in ascending order, as the `onnx`
    package writes them; tests compare the bytes): importing `onnx` to build these ~150 bytes
    would cost every worker ~0.5 s at model load.
    """
    node = field(1, b"a") + field(1, b"b") + field(2, b"product") + field(4, b"MatMul")
    graph = (field(1, node) + field(2, b"matmul")
             + field(11, value_info(b"a", ["n", k])) + field(11, value_info(b"b", [k, "w"]))
             + field(12, value_info(b"product", ["n", "w"])))
    opset = field(1, b"") + varint_field(2, OPSET)
    return varint_field(1, IR_VERSION) + field(7, graph) + field(8, opset)


def value_info(name: bytes, dims: list[int | str]) -> bytes:
    """A ValueInfoProto: a float32 tensor `name` with fixed (int) or named (str) dimensions."""
    shape = b"".join(field(1, varint_field(1, d) if isinstance(d, int) else field(2, d.encode()))
                     for d in dims)
    tensor = varint_field(1, FLOAT) + field(2, shape)
    return field(1, name) + field(2, field(1, tensor))


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    """A varint protobuf field (wire type 0), value ≥ 0."""
    return varint(number << 3) + varint(value)


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
