"""The README's Python example, run as a notebook user runs it: in a real Jupyter kernel
(nbclient), on a LocalCluster client the notebook already holds."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
import zarr
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]

# What a notebook holds before the example: a client, some digits `x`, and a short throughput
# sweep in its configuration (the report's table; the test split is timed by default).
SETUP = """
from distributed import Client, LocalCluster
import dask
import zarr
dask.config.set({"mnist-dist.score.batch-sizes": [1, 10], "mnist-dist.score.sweep-seconds": 0.01})
client = Client(LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                             dashboard_address=":0"))
import mnist_dist as md
x = zarr.open_group(str(md.default_store()), mode="r")["test/images"][:50]
"""
AFTER = """
assert client.status == "running" and client.submit(sum, [1, 2]).result() == 3
print("predictions", result.predictions["knn"].compute().tolist() == list(digits))
"""


def readme_example() -> str:
    """The first Python block of README.md's "From Python" section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.cluster
def test_the_readme_example_runs_in_a_jupyter_kernel_and_renders_the_result(
    small_store: Path, small_models: Path, tmp_path: Path, data_home: Path
) -> None:
    # The notebook's folder holds nothing: the store and models are in the data home
    # (MNIST_DIST_HOME, set by conftest), as they are wherever a notebook runs.
    shutil.copytree(small_store, data_home / "mnist.zarr")
    shutil.copytree(small_models, data_home / "models")
    cells = [nbformat.v4.new_code_cell(code) for code in (SETUP, readme_example(), AFTER)]
    notebook = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    shown = [o for o in notebook.cells[1].outputs if o["output_type"] == "execute_result"]
    html = shown[0]["data"]["text/html"]
    report = (tmp_path / "runs" / "nb" / "report.json")
    assert report.is_file()
    labels = zarr.open_group(str(small_store), mode="r")["test/labels"][:]
    knn = zarr.open_group(str(tmp_path / "runs" / "nb" / "predictions.zarr"), mode="r")["knn"][:]
    accuracy = float(np.mean(knn == labels))
    assert f"{100 * accuracy:.2f}%" in html and "600 images" in html and "<table>" in html
    printed = "".join(o.get("text", "") for o in notebook.cells[2].outputs)
    assert "predictions True" in printed, printed
