"""Ingest arrays or image files into the store as a new split, atomically.

Every check that needs no data (store, split name, shapes, dtypes, label counts) runs before
the cluster starts; the data checks (NaN, range, digits 0-9) run per block on the workers. The
split is built in a temporary sibling of the store (on its disk, or in its bucket for s3://) and
moved into it only when complete (`publish.replace_folder`), so a failed or interrupted ingest
leaves the store as it was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.delayed import Delayed
from distributed import Client

import mnist_dist
from mnist_dist.cluster import client_for
from mnist_dist.data.store import STORE_GROUPS, open_store
from mnist_dist.errors import ImageInputError, SpecError, StoreExistsError
from mnist_dist.images.files import file_labels, list_image_files
from mnist_dist.images.staging import Layout, compact_staged, stage_files
from mnist_dist.ingestion.graph import block_digests, labels_of, pixels, write_array_split
from mnist_dist.ingestion.result import Built, IngestResult
from mnist_dist.ingestion.sources import (
    check_images_array,
    check_labels_array,
    file_sha256,
    is_array_source,
    lazy_array,
)
from mnist_dist.ingestion.spec import IngestSpec
from mnist_dist.locations import absolute, is_url, local_path
from mnist_dist.observability.spans import INGEST_SPAN, job_span
from mnist_dist.publish import remove_folder, replace_folder, temporary_location
from mnist_dist.storage import check_buckets, storage_errors

log = logging.getLogger(__name__)

SavedDigits = tuple[str, Sequence[str]]  # a folder, and the PNG name of each file's digit

SPLIT_FORMAT = "mnist-dist-ingest/1"
PREPARED_SPLITS = STORE_GROUPS  # built by jobs.prepare; the models depend on them
FAILURE_SAMPLE = 5
GROUP_METADATA = "zarr.json"  # the split group's own: moved in last, it makes the split visible
# Everything a split folder holds (ingested: images, labels, ids, failures; expanded: the first
# two): anything else in it is someone else's, and --force never deletes it.
SPLIT_ENTRIES = frozenset({GROUP_METADATA, "images", "labels", "ids", "failures"})


def check_target(spec: IngestSpec) -> zarr.Group:
    """The store's root group, once the split name is allowed and free (or `force`)."""
    root = open_store(spec.store)
    if spec.split in PREPARED_SPLITS:
        raise StoreExistsError(f"{spec.store}/{spec.split} is a split of jobs.prepare and is "
                               "never replaced by an ingest; choose another --split")
    check_not_foreign(spec)
    if spec.split in root and not spec.force:
        raise StoreExistsError(f"{spec.store}/{spec.split} exists; pass --force to replace it "
                               "or choose another --split")
    return root


def check_not_foreign(spec: IngestSpec) -> None:
    """StoreExistsError when the local STORE/NAME is taken by something that is not a split
    (a file, a link, a folder of someone else's): not even --force replaces it."""
    store = str(spec.store)
    if is_url(store):
        return
    target = Path(local_path(store)) / spec.split
    reason = foreign_reason(target)
    if reason:
        raise StoreExistsError(f"{target} exists and is not a split of the store ({reason}); "
                               "--force replaces only a split: move it away or choose another "
                               "--split")


def foreign_reason(target: Path) -> str | None:
    """Why the existing `target` is not a split folder, or None (also when nothing is there)."""
    if target.is_symlink():
        return "it is a link"
    if not target.exists():
        return None
    if not target.is_dir():
        return "it is a file"
    try:
        node = json.loads((target / GROUP_METADATA).read_text()).get("node_type")
    except (OSError, ValueError, AttributeError):
        node = None
    if node != "group":
        return f"it has no Zarr group's {GROUP_METADATA}"
    foreign = sorted(p.name for p in target.iterdir() if p.name not in SPLIT_ENTRIES)
    return f"it holds {', '.join(foreign[:3])}" if foreign else None


def array_inputs(spec: IngestSpec, layout: Layout
                 ) -> tuple[da.Array, da.Array | None, dict[str, list[Delayed]]]:
    """Checked lazy images uint8 (N, 784) (preprocessed when `spec.preprocess`) and labels
    uint8 (N,) (or None) of array sources, and the block-digest tasks of the Zarr sources."""
    if spec.labels_from_names:
        raise SpecError("--labels-from-names needs image files; array sources take "
                        "--labels FILE.npy")
    parts, digests = [], {}
    for source in spec.sources:
        raw = lazy_array(source, spec.key, layout.chunk_rows)
        check_images_array(raw, source, spec.pixel_range)
        parts.append(pixels(raw, spec.pixel_range, source, layout, spec.preprocess))
        if not Path(source).is_file():
            digests[source] = block_digests(raw)
    images = da.concatenate(parts).rechunk((layout.chunk_rows, parts[0].shape[1]))
    if spec.labels is None:
        return images, None, digests
    if spec.labels.suffix.lower() != ".npy":
        raise SpecError(f"--labels of array sources must be a .npy file; got {spec.labels} instead")
    labels = lazy_array(str(spec.labels), None, layout.chunk_rows)
    check_labels_array(labels, str(spec.labels), int(images.shape[0]))
    return images, labels_of(labels, str(spec.labels), layout), digests


def provenance(spec: IngestSpec, built: Built) -> dict[str, Any]:
    """The split's `ingest` attribute: where its rows came from, when and by which code.

    `sha256`: of each array file; `content_sha256`: of each Zarr source's values (the SHA-256
    of its blocks' SHA-256s, blocks of the store's chunk rows, C order); `preprocess`: whether
    the digits were preprocessed MNIST-style (image files always are).
    """
    checksums = {s: file_sha256(Path(s)) for s in spec.sources
                 if is_array_source(s) and Path(s).is_file()}
    arrays = all(is_array_source(s) for s in spec.sources)
    return {
        "format": SPLIT_FORMAT, "sources": list(spec.sources), "key": spec.key,
        "sha256": checksums, "content_sha256": built.content_sha256,
        "n_images": built.n_images, "n_failed": built.n_failed, "pixel_range": spec.pixel_range,
        "preprocess": spec.preprocess or not arrays,
        "labels": "file names" if spec.labels_from_names else
        (str(spec.labels) if spec.labels else None),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": mnist_dist.__version__,
    }


def build_split(spec: IngestSpec, tmp: str, layout: Layout, client: Client | None) -> Built:
    """Write the split into `tmp/<split>` (a path or URL) on the cluster: the caller's
    `client`, or one of `spec.cluster` started here."""
    arrays = [is_array_source(s) for s in spec.sources]
    if any(arrays) and not all(arrays):
        raise SpecError("SOURCE must be array files/URLs or image files/folders, not both")
    split = zarr.open_group(str(tmp), mode="w-").create_group(spec.split)
    build = build_from_arrays if all(arrays) else build_from_files
    return build(spec, tmp, split, layout, client)


def build_from_arrays(spec: IngestSpec, tmp: str, split: zarr.Group, layout: Layout,
                      caller: Client | None = None) -> Built:
    """Array sources → `split`: read, checked and converted on the workers."""
    images, labels, digests = array_inputs(spec, layout)
    with client_for(spec.cluster, caller) as client:
        started = time.perf_counter()
        with job_span(INGEST_SPAN, "write"):
            content = write_array_split(client, split, images, labels, layout, digests)
        return Built(int(images.shape[0]), 0, time.perf_counter() - started, content)


def build_from_files(spec: IngestSpec, tmp: str, split: zarr.Group, layout: Layout,
                     caller: Client | None = None) -> Built:
    """Image files → `split`, on the caller's client or a new one."""
    files = list_image_files(Path(s) for s in spec.sources)
    labels = file_labels(files, spec.labels, spec.labels_from_names)
    paths = [str(f) for f in files]
    del files  # the client keeps one list of names, not Path objects as well
    with client_for(spec.cluster, caller) as client:
        return ingest_files(client, paths, labels, split, f"{tmp}/staging", layout,
                            spec.partition_files)


def ingest_files(
    client: Client, paths: Sequence[str], labels: Sequence[int] | None, split: zarr.Group,
    staging: str, layout: Layout, partition_files: int, save: SavedDigits | None = None,
) -> Built:
    """Image files → `split` on `client`: preprocessed on the workers into a staging group at
    `staging` (each digit also written as a PNG when `save` says where), then compacted;
    ImageInputError when no file is usable. The caller removes the staging group."""
    started = time.perf_counter()
    save_dir, names = save if save is not None else (None, None)
    with job_span(INGEST_SPAN):
        with job_span("stage"):
            staged = stage_files(client, paths, labels, staging, partition_files, layout,
                                 save_dir, names)
        with job_span("compact"):
            n_ok, n_failed = compact_staged(client, staged, split, layout, labels is not None)
    if n_ok == 0:
        file, reason = failure_sample(split)[0]
        raise ImageInputError(f"none of the {n_failed} image files could be read as a digit "
                              f"(first: {file}: {reason})")
    return Built(n_ok, n_failed, time.perf_counter() - started, {})


def failure_sample(split: zarr.Group) -> tuple[tuple[str, str], ...]:
    """(file, reason) of the first few failed files."""
    files, reasons = (zarr.open_array(split.store_path / f"failures/{name}", mode="r")
                      for name in ("file", "reason"))
    count = min(FAILURE_SAMPLE, files.shape[0])
    pairs = zip(np.asarray(files[:count]), np.asarray(reasons[:count]), strict=True)
    return tuple((str(file), str(reason)) for file, reason in pairs)


def run(spec: IngestSpec, *, client: Client | None = None) -> IngestResult:
    """Ingest `spec.sources` into `spec.store` as the split `spec.split` (images uint8 (N, 784),
    labels, ids, failures) on `client` (left open), or on a cluster of `spec.cluster` started
    for it; `python -m jobs.ingest` is this call.

    >>> import mnist_dist as md                                       # doctest: +SKIP
    >>> spec = md.IngestSpec(sources=("new.npy",), split="new")       # doctest: +SKIP
    >>> result = md.ingest(spec, client=client)                       # doctest: +SKIP
    >>> result.n_images, result.location                              # doctest: +SKIP
    """
    with storage_errors(locations=(str(spec.store),)):
        check_buckets({"--store": str(spec.store)})
        return ingest_split(spec, client)


def ingest_split(spec: IngestSpec, client: Client | None) -> IngestResult:
    """The ingest itself (see `run`)."""
    check_target(spec)
    store = absolute(str(spec.store)).rstrip("/")  # workers may run elsewhere
    layout = Layout.of_store(store)
    tmp = temporary_location(store)
    try:
        built = build_split(spec, tmp, layout, client)
        split = zarr.open_group(f"{tmp}/{spec.split}", mode="r+")
        split.attrs["ingest"] = provenance(spec, built)
        failures = failure_sample(split) if "failures" in split else ()
        replace_folder(f"{tmp}/{spec.split}", f"{store}/{spec.split}", marker=GROUP_METADATA)
    finally:
        remove_folder(tmp)
    log.info("ingested %d rows into %s/%s in %.1f s", built.n_images, store, spec.split,
             built.seconds)
    return IngestResult(f"{store}/{spec.split}", built.n_images, built.n_failed, failures,
                        built.seconds)
