"""The base store of a prepare run: its target checked, then built from a source (see
`mnist_dist.data.store` for its layout); or built from the vendored MNIST when missing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mnist_dist.data.sources import download, load_source, load_vendored
from mnist_dist.data.store import STORE_FORMAT, build_store, open_root, open_store, store_info
from mnist_dist.errors import StoreExistsError, StoreNotFoundError
from mnist_dist.preparation.spec import PrepareSpec
from mnist_dist.publish import exists
from mnist_dist.storage import check_buckets, storage_errors

log = logging.getLogger(__name__)


def check_store_target(store: str) -> None:
    """StoreExistsError when `store` holds something that is not a mnist-dist store (a file,
    anyone else's folder), with or without force: force rebuilds a store, never other data."""
    if not exists(store):
        return
    try:
        open_root(store)
    except StoreNotFoundError:
        raise StoreExistsError(
            f"{store} exists and is not a mnist-dist store (no {STORE_FORMAT} zarr.json); "
            "--force replaces only a store: move it away or choose another --store"
        ) from None


def build_base_store(spec: PrepareSpec) -> dict[str, Any]:
    """Check the target, load (or download) the source, build the store; its root attributes.

    Storage failures of the store's location are one StorageError (the source's are not).
    """
    locations = (spec.store,)
    with storage_errors(locations=locations):
        check_buckets({"--store": spec.store})
        check_store_target(spec.store)
    source = download(spec.download) if spec.download else spec.source
    raw = load_source(source)
    with storage_errors(locations=locations):
        path = build_store(raw, spec.store, spec.split, spec.chunk_rows, spec.force)
        return store_info(path)


def ensure_store(store: Path | str) -> None:
    """Build the store (a local path or URL) from the vendored MNIST when it does not exist."""
    try:
        open_store(store)
    except StoreNotFoundError:
        if exists(store):
            raise
        log.info("store %s not found: building it from the vendored MNIST", store)
        build_store(load_vendored(), store)
