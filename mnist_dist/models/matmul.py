"""Float32 matrix products by the faster of two kernels on the machine it runs on.

The bound search's products (small depth, wide) run through numpy's BLAS (OpenBLAS) or
onnxruntime's MLAS. Which one is faster depends on the CPU (its vector width, its caches) and
on the number of rows, so `TileProduct` times both on the real operands when the index is built
and keeps the faster per row count.
Either way each entry is a float32 dot product, its error within γ_k·Σ|terms| whatever the
order of the sums (tests/test_knn.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from mnist_dist.models.mlp import OrtSettings, session_options

# ONNX IR 8 and opset 17: every onnxruntime since 1.13 runs them.
IR_VERSION = 8
OPSET = 17
FLOAT = 1  # onnx.TensorProto.FLOAT
BACKENDS = ("numpy", "onnxruntime")
# Row counts timed at calibration (up to the search's block): a product of n rows uses the
# choice made for the largest of them ≤ n.
CALIBRATION_ROWS = (1, 8, 32, 128, 256)
CALIBRATION_SECONDS = 0.05  # rounds go on until then (the index calibrates two products)
MIN_ROUNDS = 2


@dataclass(frozen=True)
class Choice:
    """The kernel chosen for products of at least `rows` rows, and each kernel's GFLOP/s."""

    rows: int
    backend: str
    gflops: dict[str, float]


class TileProduct:
    """out (n, w) = a (n, k) @ b (k, w), all float32 and C-contiguous, by the kernel chosen for
    n rows (`calibrate`; numpy until then, or the one `backend` names).

    Runs on the calling thread (one intra-op thread, no spinning). Thread-safe; not picklable
    (an onnxruntime session): build one per process.
    """

    def __init__(self, k: int, backend: str | None = None) -> None:
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        self.k = k
        self.session = ort.InferenceSession(matmul_model(k), session_options(OrtSettings()),
                                            providers=["CPUExecutionProvider"])
        self.choices = [Choice(1, backend or "numpy", {})]
        self.calibration_seconds = 0.0  # how long `calibrate` took, warm-up included

    def calibrate(self, b: np.ndarray, max_rows: int) -> list[Choice]:
        """Time both kernels on `b` (k, w) for each of CALIBRATION_ROWS up to `max_rows`, in
        interleaved rounds for CALIBRATION_SECONDS, and keep the faster per row count (its
        fastest round: other work on the machine only ever slows a round). Returns the choices."""
        started = time.perf_counter()
        sizes = [r for r in CALIBRATION_ROWS if r < max_rows] + [max_rows]
        a = np.ones((max_rows, self.k), np.float32)
        out = np.empty((max_rows, b.shape[1]), np.float32)
        fastest = {(rows, name): np.inf for rows in sizes for name in BACKENDS}
        for name in BACKENDS:  # warm-up: first runs allocate and page in
            self.run(name, a, b, out)
        deadline = time.perf_counter() + CALIBRATION_SECONDS
        rounds = 0
        while rounds < MIN_ROUNDS or time.perf_counter() < deadline:
            for rows, name in list(fastest):
                start = time.perf_counter()
                self.run(name, a[:rows], b, out[:rows])
                fastest[rows, name] = min(fastest[rows, name], time.perf_counter() - start)
            rounds += 1
        choices = []
        for rows in sizes:
            flops = 2.0 * rows * self.k * b.shape[1]
            gflops = {name: flops / fastest[rows, name] / 1e9 for name in BACKENDS}
            choices.append(Choice(rows, max(gflops, key=gflops.__getitem__), gflops))
        self.choices = choices
        self.calibration_seconds = time.perf_counter() - started
        return choices

    def backend_for(self, rows: int) -> str:
        """The kernel that products of `rows` rows use."""
        return next(c.backend for c in reversed(self.choices) if c.rows <= max(rows, 1))

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write a @ b into `out` and return it."""
        n, w = len(a), b.shape[1] if b.ndim == 2 else -1
        for name, array, shape in (("a", a, (n, self.k)), ("b", b, (self.k, w)),
                                   ("out", out, (n, w))):
            if array.dtype != np.float32 or array.shape != shape \
                    or not array.flags.c_contiguous:
                raise ValueError(f"{name} must be C-contiguous float32 of shape {shape}; "
                                 f"got {array.dtype} {array.shape} instead")
        return self.run(self.backend_for(n), a, b, out)

    def run(self, backend: str, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        """a @ b into `out` by `backend`, unchecked."""
        if backend == "numpy" or len(a) == 0:
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
