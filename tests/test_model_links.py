"""Model files are read only from inside their folder: a link leading out of it is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mnist_dist.errors import ModelFormatError
from mnist_dist.models.artifacts import ModelRef
from tests.helpers import write_model_dir


@pytest.mark.parametrize("name", ["knn.json", "mlp.onnx", "manifest.json"])
def test_a_link_out_of_the_model_folder_is_refused_even_with_the_right_bytes(
    tmp_path: Path, name: str
) -> None:
    models = write_model_dir(tmp_path / "models")
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir()
    shutil.move(models / name, outside)  # same bytes: only the location is wrong
    (models / name).symlink_to(outside)
    with pytest.raises(ModelFormatError, match=f"{name}: links to .*outside the model folder"):
        ModelRef.from_directory(models)


def test_links_inside_the_folder_and_a_linked_folder_are_fine(tmp_path: Path) -> None:
    models = write_model_dir(tmp_path / "models")
    shutil.move(models / "knn.json", models / "knn-v1.json")
    (models / "knn.json").symlink_to("knn-v1.json")
    (tmp_path / "current").symlink_to(models)
    assert ModelRef.from_directory(tmp_path / "current").directory == str(models.resolve())
