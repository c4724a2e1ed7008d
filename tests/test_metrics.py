"""Metrics on NumPy arrays, and the per-partition reductions of the scoring graph."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn.metrics

from mnist_dist.metrics import N_CLASSES, accuracy, confusion_matrix, per_class_accuracy
from mnist_dist.scoring.tasks import misclassified_rows, partition_summary


def random_digits(n: int, seed: int, dtype: type = np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """Labels and mostly-correct predictions, both (n,) of `dtype`."""
    rng = np.random.default_rng(seed)
    labels: np.ndarray = rng.integers(0, N_CLASSES, size=n).astype(dtype)
    wrong = rng.random(n) < 0.3
    predictions: np.ndarray = np.where(wrong, rng.integers(0, N_CLASSES, size=n), labels).astype(
        dtype
    )
    return labels, predictions


# --- confusion matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
@pytest.mark.parametrize("n", [1, 37, 5000])
def test_confusion_matrix_equals_sklearn(n: int, dtype: type) -> None:
    labels, predictions = random_digits(n, seed=n, dtype=dtype)
    confusion = confusion_matrix(labels, predictions)
    assert confusion.shape == (N_CLASSES, N_CLASSES)
    assert confusion.dtype == np.int64
    expected = sklearn.metrics.confusion_matrix(labels, predictions, labels=range(N_CLASSES))
    np.testing.assert_array_equal(confusion, expected)
    assert confusion.sum() == n


def test_confusion_matrix_of_nothing_is_zero() -> None:
    # scikit-learn refuses empty input; an empty partition must still give a (10, 10) matrix.
    confusion = confusion_matrix(np.empty(0, np.uint8), np.empty(0, np.uint8))
    np.testing.assert_array_equal(confusion, np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64))


def test_confusion_rows_are_true_digits() -> None:
    confusion = confusion_matrix(np.array([2, 2, 7], np.uint8), np.array([5, 2, 7], np.uint8))
    assert confusion[2, 5] == 1  # true 2, predicted 5
    assert confusion[5, 2] == 0
    assert confusion[2, 2] == confusion[7, 7] == 1
    assert confusion.sum() == 3


def test_confusion_matrix_shape_mismatch() -> None:
    with pytest.raises(
        ValueError,
        match=r"labels and predictions must have the same shape; got \(3,\) and \(2,\) instead",
    ):
        confusion_matrix(np.zeros(3, np.uint8), np.zeros(2, np.uint8))


def test_confusion_matrices_add_over_partitions() -> None:
    labels, predictions = random_digits(1000, seed=3)
    parts = [
        confusion_matrix(labels[start : start + 333], predictions[start : start + 333])
        for start in range(0, 1000, 333)
    ]
    np.testing.assert_array_equal(sum(parts), confusion_matrix(labels, predictions))


# --- accuracy ------------------------------------------------------------------------------------


def test_accuracy_equals_sklearn() -> None:
    labels, predictions = random_digits(2000, seed=11)
    assert accuracy(confusion_matrix(labels, predictions)) == pytest.approx(
        sklearn.metrics.accuracy_score(labels, predictions)
    )


def test_accuracy_edges() -> None:
    labels = np.arange(10, dtype=np.uint8)
    assert accuracy(confusion_matrix(labels, labels)) == 1.0
    assert accuracy(confusion_matrix(labels, (labels + 1) % 10)) == 0.0
    empty = confusion_matrix(np.empty(0, np.uint8), np.empty(0, np.uint8))
    assert accuracy(empty) == 0.0
    assert isinstance(accuracy(empty), float)


def test_per_class_accuracy_equals_sklearn_recall() -> None:
    labels, predictions = random_digits(3000, seed=5)
    recall = sklearn.metrics.recall_score(
        labels, predictions, labels=range(N_CLASSES), average=None
    )
    per_class = per_class_accuracy(confusion_matrix(labels, predictions))
    assert len(per_class) == N_CLASSES
    assert per_class == pytest.approx(recall.tolist())


def test_per_class_accuracy_absent_class_is_none() -> None:
    labels = np.array([0, 0, 1, 1, 1, 9], dtype=np.uint8)
    predictions = np.array([0, 3, 1, 1, 2, 3], dtype=np.uint8)
    per_class = per_class_accuracy(confusion_matrix(labels, predictions))
    assert per_class[0] == pytest.approx(0.5)
    assert per_class[1] == pytest.approx(2 / 3)
    assert per_class[9] == 0.0
    # 3 is predicted but never a label: absent, not 0.
    assert [d for d, value in enumerate(per_class) if value is None] == [2, 3, 4, 5, 6, 7, 8]


# --- partition reductions ------------------------------------------------------------------------


def test_partition_summaries_add_up_to_the_whole() -> None:
    labels, predictions = random_digits(500, seed=8)
    parts = [
        partition_summary(labels[start : start + 70], {"knn": predictions[start : start + 70]},
                          start, limit=3)
        for start in range(0, 500, 70)
    ]
    total = np.sum([part["confusion"]["knn"] for part in parts], axis=0)
    np.testing.assert_array_equal(total, confusion_matrix(labels, predictions))
    json.dumps(parts)  # markers are JSON: every value must serialise


def test_partition_summary_of_an_empty_partition() -> None:
    empty = np.empty(0, np.uint8)
    part = partition_summary(empty, {"mlp": empty}, 0, limit=5)
    assert np.asarray(part["confusion"]["mlp"]).shape == (N_CLASSES, N_CLASSES)
    assert np.sum(part["confusion"]["mlp"]) == 0
    assert part["misclassified"]["mlp"] == []


def test_misclassified_rows_use_global_indices() -> None:
    labels = np.array([1, 2, 3, 4, 5, 6], dtype=np.uint8)
    predictions = np.array([1, 0, 3, 9, 5, 6], dtype=np.uint8)
    rows = misclassified_rows(labels, predictions, offset=1000, limit=5)
    assert rows.dtype == np.int64
    np.testing.assert_array_equal(rows, [[1001, 2, 0], [1003, 4, 9]])


def test_misclassified_rows_limit_keeps_the_first() -> None:
    labels, predictions = random_digits(400, seed=21)
    wrong = np.flatnonzero(labels != predictions)
    assert len(wrong) > 10
    rows = misclassified_rows(labels, predictions, offset=50, limit=10)
    np.testing.assert_array_equal(rows[:, 0], wrong[:10] + 50)
    np.testing.assert_array_equal(rows[:, 1], labels[wrong[:10]])
    np.testing.assert_array_equal(rows[:, 2], predictions[wrong[:10]])


def test_misclassified_rows_across_partitions_are_the_global_mistakes() -> None:
    labels, predictions = random_digits(1000, seed=2)
    size = 120
    rows = np.concatenate([
        misclassified_rows(labels[start : start + size], predictions[start : start + size],
                           start, limit=size)
        for start in range(0, 1000, size)
    ])
    wrong = np.flatnonzero(labels != predictions)
    np.testing.assert_array_equal(rows[:, 0], wrong)
    np.testing.assert_array_equal(rows[:, 1], labels[wrong])
    np.testing.assert_array_equal(rows[:, 2], predictions[wrong])


def test_misclassified_rows_all_correct_and_zero_limit() -> None:
    labels = np.arange(10, dtype=np.uint8)
    assert misclassified_rows(labels, labels, offset=7, limit=3).shape == (0, 3)
    assert misclassified_rows(labels, (labels + 1) % 10, offset=7, limit=0).shape == (0, 3)
