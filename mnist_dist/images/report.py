"""The `images` section of an image run's report.json: what was asked for, how many files were
scored or failed (counts by reason and a bounded list of examples), how they were preprocessed.

Everything else in the report is the score report's (`mnist_dist.report.document`): the files
were ingested into a split and scored with the normal graph.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import zarr

from mnist_dist.images import preprocess
from mnist_dist.images.spec import ImageScoreSpec

FAILURE_EXAMPLES = 20  # failed files named in report.json; the predictions store has them all
REASON_KINDS = 20  # distinct reasons counted; the rest are counted as "other"


def labels_source(spec: ImageScoreSpec) -> dict[str, Any]:
    """Where the labels came from, for the report."""
    if spec.labels is not None:
        return {"source": "csv", "path": str(spec.labels)}
    if spec.labels_from_names:
        return {"source": "names", "path": None}
    return {"source": None, "path": None}


def preprocessing_facts() -> dict[str, Any]:
    """The preprocessing steps and their parameters, for the report."""
    return {
        "steps": ["to_grayscale", "fix_polarity", "isolate_ink", "drop_specks", "trim_to_ink",
                  "fit_box", "centre_by_mass"],
        "side": preprocess.SIDE, "box": preprocess.BOX, "centre": preprocess.CENTRE,
        "noise_floor_fraction": preprocess.NOISE_FLOOR_FRACTION,
        "bilevel_threshold": preprocess.BILEVEL_THRESHOLD,
        "bilevel_max_scale": preprocess.BILEVEL_MAX_SCALE,
        "max_pixels": preprocess.MAX_PIXELS, "formats": list(preprocess.FORMATS),
    }


def reason_kind(reason: str) -> str:
    """A failure reason without its particulars (sizes, system messages): what it is counted as."""
    return reason.split(" (")[0].split(";")[0].strip()


def failure_facts(failures: zarr.Group) -> dict[str, Any]:
    """Counts of the failed files by reason and the first few (file, reason), read chunk by
    chunk: memory does not grow with the number of failures."""
    files, reasons = failures["file"], failures["reason"]
    counts: Counter[str] = Counter()
    step = max(1, int(reasons.chunks[0]))
    for start in range(0, int(reasons.shape[0]), step):
        counts.update(reason_kind(str(r)) for r in np.asarray(reasons[start : start + step]))
    kept = dict(counts.most_common(REASON_KINDS))
    if len(counts) > REASON_KINDS:
        kept["other"] = sum(counts.values()) - sum(kept.values())
    n = min(FAILURE_EXAMPLES, int(files.shape[0]))
    examples = [{"file": str(f), "reason": str(r)}
                for f, r in zip(np.asarray(files[:n]), np.asarray(reasons[:n]), strict=True)]
    return {"by_reason": kept, "examples": examples}


def images_section(
    spec: ImageScoreSpec, n_scored: int, failures: zarr.Group, staging: dict[str, Any]
) -> dict[str, Any]:
    """The report's `images` section (see the module docstring); `staging` adds the ingest's
    partitions and seconds."""
    n_failed = int(failures["file"].shape[0])
    return {
        "paths": [str(p) for p in spec.images],
        "n_files": n_scored + n_failed, "n_scored": n_scored, "n_failed": n_failed,
        "failures": failure_facts(failures),
        "labels": labels_source(spec),
        "preprocessing": preprocessing_facts(),
        "preprocessed": str(spec.save_preprocessed.resolve()) if spec.save_preprocessed else None,
        **staging,
    }


def failure_lines(section: dict[str, Any]) -> list[str]:
    """Terminal text: files scored and failed, failures by reason, the first few failed files."""
    lines = [(f"scored {section['n_scored']:,} of {section['n_files']:,} image files "
             f"({section['n_failed']:,} failed)")]
    failures = section["failures"]
    lines += [f"  {count:>8,}  {reason}" for reason, count in failures["by_reason"].items()]
    lines += [f"  failed: {e['file']}: {e['reason']}" for e in failures["examples"]]
    return lines
