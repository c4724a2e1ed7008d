"""report.json's JSON Schema (mnist_dist/report/report.schema.json): shipped in the package,
checked before every report is written, so every report the suite writes matches it."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mnist_dist.errors import ReportError
from mnist_dist.report import document, render, schema

SAMPLE = Path(__file__).parent / "data" / "report-sample.json"


@pytest.fixture
def sample() -> dict[str, Any]:
    return json.loads(SAMPLE.read_text())


def test_the_schema_is_a_valid_json_schema_shipped_in_the_package() -> None:
    text = resources.files("mnist_dist.report").joinpath(schema.SCHEMA_FILE).read_text()
    jsonschema.Draft202012Validator.check_schema(json.loads(text))


def test_a_report_of_todays_schema_matches_it(sample: dict[str, Any]) -> None:
    schema.check_document(sample)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda r: r["models"]["knn"].update(accuracy="0.97"), "models.knn.accuracy"),
    (lambda r: r["dataset"].update(n_images=-1), "dataset.n_images"),
    (lambda r: r["models"]["mlp"]["confusion"].pop(), "models.mlp.confusion"),
    (lambda r: r["throughput"][0].update(batch_size=0), "throughput.0.batch_size"),
    (lambda r: r.update(schema="mnist-dist-report/9"), "schema"),
    (lambda r: r["models"]["knn"].pop("accuracy"), "models.knn"),
    (lambda r: r.update(schema="mnist-dist-report/2"), "(the document)"),  # no predictions
])
def test_a_field_of_the_wrong_type_is_refused_and_nothing_is_written(
    sample: dict[str, Any], edit: Any, field: str, tmp_path: Path
) -> None:
    report = copy.deepcopy(sample)
    edit(report)
    with pytest.raises(ReportError, match=rf"^report field {re.escape(field)} does not match "
                                          rf"report\.schema\.json: "):
        document.write_report(report, tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_valid_report_is_written(sample: dict[str, Any], tmp_path: Path) -> None:
    path = document.write_report(sample, tmp_path)
    assert json.loads(path.read_text()) == sample


def test_worker_start_up_is_in_the_report_apart_from_scoring(
    sample: dict[str, Any], tmp_path: Path
) -> None:
    """Each worker's seconds to load the models, their max and count: checked by the schema and
    the renderer's reader, shown in report.html and report.md beside the scoring time."""
    seconds = {"tcp://127.0.0.1:40001": 0.412, "tcp://127.0.0.1:40000": 1.83}
    sample["startup"] = document.startup_section(seconds)
    assert sample["startup"] == {"worker_seconds": dict(sorted(seconds.items())),
                                 "max_seconds": 1.83, "workers": 2}
    schema.check_document(sample)
    schema.check_report(sample)
    html, md = (p.read_text() for p in render.render_report(sample, tmp_path))
    wall = sample["timing"]["wall_seconds"]
    line = f"Worker start-up (models loaded): max 1.83 s over 2 workers; scoring {wall:.3g} s."
    assert line in md
    shown = re.sub(r"<[^>]+>", "", html)
    assert line in shown
    assert '<span data-key="[&quot;startup&quot;, &quot;max_seconds&quot;]" data-fmt="sig">1.83' \
        in html


def test_the_knn_kernels_chosen_at_load_are_in_the_report(
    sample: dict[str, Any], tmp_path: Path
) -> None:
    kernels = {"bound": "numpy from 1 row, onnxruntime from 32 rows", "narrow": "numpy from 1 row"}
    other = {**kernels, "bound": "numpy from 1 row"}
    for workers, who in (({"tcp://127.0.0.1:40000": kernels, "tcp://127.0.0.1:40001": kernels},
                          "every worker"),
                         ({"tcp://127.0.0.1:40000": kernels, "tcp://127.0.0.1:40001": other},
                          "tcp://127.0.0.1:40000 (others differ: see report.json)")):
        sample["startup"] = document.startup_section(
            {"tcp://127.0.0.1:40000": 1.0, "tcp://127.0.0.1:40001": 1.1}, workers)
        assert sample["startup"]["knn_kernels"] == workers
        schema.check_document(sample)
        schema.check_report(sample)
        html, md = (p.read_text() for p in render.render_report(sample, tmp_path))
        line = (f"KNN GEMM kernels measured at load on {who}: {kernels['bound']}; "
                f"narrow bound {kernels['narrow']}.")
        assert line in md and line in re.sub(r"<[^>]+>", "", html)
    sample["startup"]["knn_kernels"]["tcp://127.0.0.1:40000"] = {"bound": 3}
    with pytest.raises(ReportError, match=r"startup"):
        schema.check_document(sample)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda s: s["worker_seconds"].update({"tcp://127.0.0.1:40000": -1.0}),
     "startup.worker_seconds.tcp://127.0.0.1:40000"),
    (lambda s: s.update(workers=0), "startup.workers"),
    (lambda s: s.pop("max_seconds"), "startup"),
])
def test_a_bad_start_up_section_is_refused(sample: dict[str, Any], edit: Any, field: str
                                           ) -> None:
    sample["startup"] = document.startup_section({"tcp://127.0.0.1:40000": 1.0})
    edit(sample["startup"])
    with pytest.raises(ReportError, match=rf"^report field {re.escape(field)} does not match"):
        schema.check_document(sample)
