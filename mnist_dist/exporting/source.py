"""Where a run's rows live: its predictions store and the labels of the scored split, found
from the run folder and checked before any partition is read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zarr

from mnist_dist.data.splits import missing_chunks
from mnist_dist.data.store import zarr_array
from mnist_dist.errors import DataError, StoreNotFoundError
from mnist_dist.report.schema import REPORT_NAME
from mnist_dist.run_state import RUN_FILE, read_run_file

N_CLASSES = 10


@dataclass(frozen=True)
class Source:
    """Where a run's rows live: its predictions store (N rows in `chunk_rows` chunks), whether
    it holds `ids`, and the labels array of the scored split (store, name) when there is one."""

    predictions: str
    n_rows: int
    chunk_rows: int
    has_ids: bool
    labels: tuple[str, str] | None


def locate(run: Path) -> Source:
    """The run's predictions and labels, checked; StoreNotFoundError or DataError if unusable."""
    if not (run / RUN_FILE).is_file():
        raise StoreNotFoundError(f"{run}: no {RUN_FILE}; expected the folder of a jobs.score run")
    if not (run / REPORT_NAME).is_file():  # written last: without it some rows may be missing
        raise DataError(f"{run}: the run is unfinished (no {REPORT_NAME}); finish it with "
                        f"`python -m jobs.score --resume --out {run}` first")
    identity = read_run_file(run / RUN_FILE)
    predictions = str(identity.get("predictions") or run / "predictions.zarr")
    try:
        group = zarr.open_group(predictions, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreNotFoundError(f"{run}: predictions store {predictions} not found") from exc
    mlp = check_predictions(group, predictions)
    return Source(predictions, int(mlp.shape[0]), int(mlp.chunks[0]), "ids" in group,
                  split_labels(identity, int(mlp.shape[0])))


def check_predictions(group: zarr.Group, where: str) -> zarr.Array:
    """The `mlp` array, once knn, mlp and mlp_probabilities (and ids) agree in length."""
    missing = [n for n in ("knn", "mlp", "mlp_probabilities") if n not in group]
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}; expected the predictions of a "
                        "finished jobs.score run (rescore it with this version)")
    mlp = zarr_array(where, "mlp")
    n = mlp.shape[0]
    expected = {"knn": (n,), "mlp_probabilities": (n, N_CLASSES), "ids": (n,)}
    for name, shape in expected.items():
        if name in group and zarr_array(where, name).shape != shape:
            raise DataError(f"{where}/{name} must have shape {shape}, one row per image; "
                            f"got {zarr_array(where, name).shape} instead")
    for name in ("knn", "mlp", "mlp_probabilities", "ids"):
        count, first = missing_chunks(zarr_array(where, name), limit=3) if name in group \
            else (0, [])
        if count:  # every chunk is written, even all zeros: an absent one was lost
            raise DataError(
                f"{where}/{name} is missing {count} chunk(s) ({', '.join(first)}"
                f"{', …' if count > 3 else ''}): the predictions of some rows were "
                "lost; expected every chunk (score the split again with a new --out)"
            )
    return mlp


def split_labels(identity: dict[str, object], n_rows: int) -> tuple[str, str] | None:
    """(store, "<split>/labels") of the scored split when it has labels of `n_rows` rows."""
    store, split = identity.get("store"), identity.get("split")
    if not isinstance(store, str) or not isinstance(split, str):
        return None
    try:
        group = zarr.open_group(store, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreNotFoundError(f"store {store} of the run not found; it holds the labels "
                                 f"of split {split!r}") from exc
    name = f"{split}/labels"
    if name not in group:
        return None
    if zarr_array(store, name).shape != (n_rows,):
        raise DataError(f"{store}/{name} must have {n_rows} rows, one per prediction; "
                        f"got {zarr_array(store, name).shape} instead")
    return store, name
