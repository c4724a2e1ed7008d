"""KNN: the GEMM backend equals the scikit-learn reference; ties, selection, fallback, files."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from mnist_dist.data.sources import RawMnist
from mnist_dist.errors import DataError, ModelNotFoundError
from mnist_dist.models import knn
from mnist_dist.models.knn import (
    KNN_ARRAYS,
    KNN_PARAMS,
    SELECT_GROUP,
    GemmKnn,
    KnnModel,
    knn_from_bytes,
    load_knn,
    predict_sklearn,
    save_knn,
    select_smallest,
    sklearn_classifier,
    vote,
)
from mnist_dist.models.knn_bound import GROUP
from mnist_dist.models.knn_layout import tree_order
from mnist_dist.models.knn_scan import full_scan, weighted_distance
from mnist_dist.models.matmul import BACKENDS, IR_VERSION, OPSET, TileProduct, matmul_model
from tests.helpers import fitted_scaler, identity_scaler, small_knn_model

N_REFERENCE = 5000
N_QUERIES = 1000
N_FALLBACK_QUERIES = 60  # the forced fallback scans every reference row per query
SEARCHES = ("bound", "shortlist")


@dataclass(frozen=True)
class Subset:
    """Real digits: reference rows with labels, and held-out queries."""

    reference: np.ndarray
    labels: np.ndarray
    queries: np.ndarray


@pytest.fixture(scope="module")
def subset(vendored: RawMnist) -> Subset:
    return Subset(
        vendored.x_train[:N_REFERENCE], vendored.y_train[:N_REFERENCE], vendored.x_test[:N_QUERIES]
    )


def make_model(subset: Subset, n_neighbors: int) -> KnnModel:
    return KnnModel(subset.reference, subset.labels, fitted_scaler(subset.reference), n_neighbors)


def sklearn_kneighbors(model: KnnModel, queries: np.ndarray) -> np.ndarray:
    """scikit-learn's brute-force neighbours on the standardised float64 pixels."""
    classifier = KNeighborsClassifier(model.n_neighbors, algorithm="brute")
    classifier.fit(model.scaler.transform(model.reference, np.float64), model.labels)
    return classifier.kneighbors(
        model.scaler.transform(queries, np.float64), return_distance=False
    )


@pytest.fixture(scope="module")
def model3(subset: Subset) -> KnnModel:
    return make_model(subset, 3)


@pytest.fixture(scope="module")
def sklearn_neighbours3(model3: KnnModel, subset: Subset) -> np.ndarray:
    return sklearn_kneighbors(model3, subset.queries)


@pytest.fixture(scope="module")
def sklearn_predictions3(model3: KnnModel, subset: Subset) -> np.ndarray:
    return predict_sklearn(model3, subset.queries)


# --- agreement with scikit-learn on real digits ------------------------------------------------


# Block sizes that do not divide the batch; 7 on fewer queries to keep the test quick.
@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize(
    ("block_rows", "n_queries"), [(7, 300), (100, N_QUERIES), (256, N_QUERIES), (2000, N_QUERIES)]
)
def test_kneighbors_equal_sklearn_for_any_block_size(
    search: str,
    block_rows: int,
    n_queries: int,
    model3: KnnModel,
    subset: Subset,
    sklearn_neighbours3: np.ndarray,
) -> None:
    gemm = GemmKnn(model3, block_rows=block_rows, search=search)
    neighbours = gemm.kneighbors(subset.queries[:n_queries])[1]
    assert neighbours.shape == (n_queries, 3)
    assert neighbours.dtype == np.int64
    np.testing.assert_array_equal(neighbours, sklearn_neighbours3[:n_queries])


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("block_rows", [100, 256])
def test_predictions_equal_sklearn_for_any_block_size(
    search: str, block_rows: int, model3: KnnModel, subset: Subset,
    sklearn_predictions3: np.ndarray,
) -> None:
    predictions = GemmKnn(model3, block_rows=block_rows, search=search).predict(subset.queries)
    assert predictions.dtype == np.uint8
    assert predictions.shape == (N_QUERIES,)
    np.testing.assert_array_equal(predictions, sklearn_predictions3)


def test_predictions_are_a_real_classifier(
    model3: KnnModel, subset: Subset, vendored: RawMnist
) -> None:
    # Guards against agreeing with the reference on a degenerate answer (e.g. all one digit).
    predictions = GemmKnn(model3).predict(subset.queries)
    assert (predictions == vendored.y_test[:N_QUERIES]).mean() > 0.85
    assert len(np.unique(predictions)) == 10


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("n_neighbors", [1, 5])
def test_other_k_equal_sklearn(n_neighbors: int, search: str, subset: Subset) -> None:
    model = make_model(subset, n_neighbors)
    gemm = GemmKnn(model, block_rows=100, search=search)
    queries = subset.queries[: N_QUERIES // 2]
    np.testing.assert_array_equal(gemm.kneighbors(queries)[1], sklearn_kneighbors(model, queries))
    np.testing.assert_array_equal(gemm.predict(queries), predict_sklearn(model, queries))


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize(("n_reference", "n_neighbors"), [(1, 1), (10, 10), (64, 64), (300, 20)])
def test_k_up_to_every_reference_row(n_reference: int, n_neighbors: int, search: str) -> None:
    # k above the shortlist (16), or k = n_reference, must still give the exact neighbours.
    model = small_knn_model(n_reference, n_neighbors)
    queries = small_knn_model(50, offset=n_reference).reference
    gemm = GemmKnn(model, search=search)
    neighbours = gemm.kneighbors(queries)[1]
    assert neighbours.shape == (50, n_neighbors)
    np.testing.assert_array_equal(neighbours, sklearn_kneighbors(model, queries))
    np.testing.assert_array_equal(gemm.predict(queries), predict_sklearn(model, queries))


def test_images_28x28_equal_flat(model3: KnnModel, subset: Subset) -> None:
    gemm = GemmKnn(model3)
    queries = subset.queries[:50]
    np.testing.assert_array_equal(
        gemm.predict(queries.reshape(50, 28, 28)), gemm.predict(queries)
    )


# --- the fallback path -------------------------------------------------------------------------


def test_forced_fallback_gives_identical_results(
    model3: KnnModel,
    subset: Subset,
    sklearn_neighbours3: np.ndarray,
    sklearn_predictions3: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gemm = GemmKnn(model3, block_rows=32, search="shortlist")
    queries = subset.queries[:N_FALLBACK_QUERIES]
    scans: list[int] = []
    full_scan = GemmKnn._kneighbors_full

    def counting_scan(self: GemmKnn, pixels: np.ndarray, first: np.ndarray) -> np.ndarray:
        scans.append(1)
        return full_scan(self, pixels, first)

    monkeypatch.setattr(GemmKnn, "_kneighbors_full", counting_scan)
    # On real digits the bound proves every shortlist: no full scan.
    neighbours = gemm.kneighbors(queries)[1]
    np.testing.assert_array_equal(neighbours, sklearn_neighbours3[:N_FALLBACK_QUERIES])
    assert scans == []
    # A huge error bound proves nothing: every query takes the exact full scan.
    monkeypatch.setattr(knn, "GEMM_ERROR_BOUND", 1e9)
    neighbours = gemm.kneighbors(queries)[1]
    assert len(scans) == N_FALLBACK_QUERIES
    np.testing.assert_array_equal(neighbours, sklearn_neighbours3[:N_FALLBACK_QUERIES])
    np.testing.assert_array_equal(
        vote(model3.labels[neighbours]), sklearn_predictions3[:N_FALLBACK_QUERIES]
    )


# --- crafted ties (identity scaler: standardised pixels are the raw ones, distances exact) -----


def one_pixel_rows(values: dict[int, int], n_rows: int) -> np.ndarray:
    """Rows that are 0 except pixel `row % 784` = value; the distance² to a blank query is value²."""
    rows = np.zeros((n_rows, 784), dtype=np.uint8)
    for row, value in values.items():
        rows[row, row % 784] = value
    return rows


def filler_rows(n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference rows far from a blank query (every pixel >= 200), with varied labels."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(200, 256, size=(n_rows, 784), dtype=np.uint8)
    return rows, (np.arange(n_rows) % 10).astype(np.uint8)


def crafted_model(
    near: dict[int, tuple[int, int]], n_rows: int, n_neighbors: int
) -> KnnModel:
    """Filler rows, except rows `near` = {index: (pixel value, label)} close to a blank query."""
    rows, labels = filler_rows(n_rows)
    rows[list(near)] = one_pixel_rows({i: value for i, (value, _) in near.items()}, n_rows)[
        list(near)
    ]
    for index, (_, label) in near.items():
        labels[index] = label
    return KnnModel(rows, labels, identity_scaler(), n_neighbors)


BLANK = np.zeros((1, 784), dtype=np.uint8)
# Below and above SELECT_GROUP * (shortlist + 2) rows, so both selection paths are exercised.
CRAFTED_SIZES = [40, SELECT_GROUP * 30]


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("n_rows", CRAFTED_SIZES)
def test_equal_distance_goes_to_the_lower_reference_index(n_rows: int, search: str) -> None:
    # Rows 3 and 1 + n_rows // 2 tie for the third place: the lower index wins, so digit 9 has
    # two of three votes; the higher one would have given digit 5 two votes.
    tied_high = 1 + n_rows // 2
    near = {7: (10, 5), 2: (20, 9), 3: (30, 9), tied_high: (30, 5)}
    model = crafted_model(near, n_rows, n_neighbors=3)
    gemm = GemmKnn(model, search=search)
    np.testing.assert_array_equal(gemm.kneighbors(BLANK)[1], [[7, 2, 3]])
    np.testing.assert_array_equal(gemm.predict(BLANK), [9])
    np.testing.assert_array_equal(predict_sklearn(model, BLANK), [9])
    np.testing.assert_array_equal(sklearn_kneighbors(model, BLANK), [[7, 2, 3]])


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("n_rows", CRAFTED_SIZES)
def test_duplicate_rows_with_different_labels(n_rows: int, search: str) -> None:
    rows, labels = filler_rows(n_rows)
    duplicates = [5, n_rows // 2, n_rows - 1]
    rows[duplicates] = rows[0]
    labels[0] = 7
    labels[duplicates] = [2, 1, 0]
    for k, expected_neighbours, expected_digit in [
        (1, [0], 7),  # the lower index, not the lower digit
        (2, [0, 5], 2),  # one vote each for 7 and 2: the lower digit
        (3, [0, 5, n_rows // 2], 1),
    ]:
        model = KnnModel(rows, labels, identity_scaler(), k)
        query = rows[[0]]
        gemm = GemmKnn(model, search=search)
        np.testing.assert_array_equal(gemm.kneighbors(query)[1], [expected_neighbours])
        np.testing.assert_array_equal(gemm.predict(query), [expected_digit])
        np.testing.assert_array_equal(predict_sklearn(model, query), [expected_digit])
        # scikit-learn picks the same rows but leaves equal distances in no particular order.
        assert set(sklearn_kneighbors(model, query)[0]) == set(expected_neighbours)


@pytest.mark.parametrize("search", SEARCHES)
def test_more_equal_rows_than_the_shortlist(search: str) -> None:
    # 40 copies of one row spread over 2,000: the float32 shortlist cannot tell them apart, so
    # only the fallback can return the lowest indices.
    rows, labels = filler_rows(SELECT_GROUP * 30)
    copies = np.sort(np.random.default_rng(1).choice(np.arange(1, len(rows)), 40, replace=False))
    rows[copies] = rows[0]
    labels[copies] = np.arange(40) % 10
    model = KnnModel(rows, labels, identity_scaler(), 5)
    query = rows[[0]]
    expected = np.concatenate([[0], copies[:4]])
    gemm = GemmKnn(model, search=search)
    np.testing.assert_array_equal(gemm.kneighbors(query)[1], [expected])
    np.testing.assert_array_equal(gemm.predict(query), vote(labels[expected][None]))
    np.testing.assert_array_equal(gemm.predict(query), predict_sklearn(model, query))
    assert set(sklearn_kneighbors(model, query)[0]) == set(expected)


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("n_rows", CRAFTED_SIZES)
def test_three_way_vote_tie_goes_to_the_lowest_digit(n_rows: int, search: str) -> None:
    # The nearest neighbour is an 8, but 8, 3 and 5 have one vote each: 3 wins.
    model = crafted_model({4: (10, 8), 9: (20, 3), 1: (30, 5)}, n_rows, n_neighbors=3)
    gemm = GemmKnn(model, search=search)
    np.testing.assert_array_equal(gemm.kneighbors(BLANK)[1], [[4, 9, 1]])
    np.testing.assert_array_equal(gemm.predict(BLANK), [3])
    np.testing.assert_array_equal(predict_sklearn(model, BLANK), [3])


def test_two_two_vote_tie_goes_to_the_lower_digit() -> None:
    model = crafted_model({0: (10, 8), 1: (11, 8), 2: (12, 3), 3: (13, 3)}, 40, n_neighbors=4)
    np.testing.assert_array_equal(GemmKnn(model).predict(BLANK), [3])
    np.testing.assert_array_equal(predict_sklearn(model, BLANK), [3])


# --- vote ------------------------------------------------------------------------------------


def reference_vote(row: np.ndarray) -> int:
    counts = Counter(int(label) for label in row)
    best = max(counts.values())
    return min(label for label, count in counts.items() if count == best)


def test_vote_semantics() -> None:
    np.testing.assert_array_equal(
        vote(np.array([[3, 3, 1], [9, 2, 5], [7, 7, 7], [6, 0, 0], [4, 2, 2]], dtype=np.uint8)),
        [3, 2, 7, 0, 2],
    )
    single = np.array([[9], [0], [4]], dtype=np.uint8)
    np.testing.assert_array_equal(vote(single), single[:, 0])


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
def test_vote_matches_a_plain_majority_with_low_digit_ties(k: int) -> None:
    labels = np.random.default_rng(k).integers(0, 10, size=(500, k), dtype=np.uint8)
    votes = vote(labels)
    assert votes.dtype == np.uint8
    assert votes.shape == (500,)
    np.testing.assert_array_equal(votes, [reference_vote(row) for row in labels])


def test_vote_of_no_rows() -> None:
    votes = vote(np.empty((0, 3), dtype=np.uint8))
    assert votes.shape == (0,)
    assert votes.dtype == np.uint8


# --- select_smallest ---------------------------------------------------------------------------


def check_selection(scores: np.ndarray, m: int) -> None:
    columns, bound = select_smallest(scores, m)
    assert columns.shape == (len(scores), m)
    assert bound.shape == (len(scores),)
    expected = np.sort(scores, axis=1)
    for row, selected in enumerate(columns):
        assert len(set(selected.tolist())) == m, "selected columns must be distinct"
        np.testing.assert_array_equal(np.sort(scores[row, selected]), expected[row, :m])
        rest = np.delete(scores[row], selected)
        assert bound[row] <= rest.min()
        assert bound[row] >= scores[row, selected].max()


# Grouped selection needs n_cols // SELECT_GROUP > m + 1 (and n_cols a multiple of the group).
SELECTION_CASES = [
    (17, 16), (100, 16), (SELECT_GROUP * 17, 16), (SELECT_GROUP * 18, 16),
    (SELECT_GROUP * 40, 16), (SELECT_GROUP * 40, 3), (SELECT_GROUP * 5, 1), (65, 64),
]


@pytest.mark.parametrize(("n_cols", "m"), SELECTION_CASES)
@pytest.mark.parametrize("distinct_values", [4, 50, None])
def test_select_smallest_returns_a_set_of_m_smallest(
    n_cols: int, m: int, distinct_values: int | None
) -> None:
    rng = np.random.default_rng(n_cols * 100 + m)
    if distinct_values is None:
        scores = rng.standard_normal((64, n_cols)).astype(np.float32)
    else:  # many ties
        scores = rng.integers(0, distinct_values, size=(64, n_cols)).astype(np.float32)
    check_selection(scores, m)


@pytest.mark.parametrize(("n_cols", "m"), SELECTION_CASES)
def test_select_smallest_with_inf_padding(n_cols: int, m: int) -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(-3, 3, size=(32, n_cols)).astype(np.float32)
    # Rows padded with +inf at the end (as GemmKnn pads), some so far that few finite values remain.
    for row in range(len(scores)):
        finite = int(rng.integers(m + 1, n_cols + 1)) if row % 2 else n_cols - 1
        scores[row, finite:] = np.inf
    check_selection(scores, m)


def test_select_smallest_bound_can_be_inf() -> None:
    scores = np.full((2, SELECT_GROUP * 20), np.inf, dtype=np.float32)
    scores[:, [3, 700]] = [[1.0, 2.0], [2.0, 1.0]]
    columns, bound = select_smallest(scores, 2)
    assert [sorted(row) for row in columns.tolist()] == [[3, 700], [3, 700]]
    assert np.isinf(bound).all()


# --- input contract ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_gemm() -> GemmKnn:
    return GemmKnn(small_knn_model(200))


def test_empty_batch(small_gemm: GemmKnn) -> None:
    empty = np.empty((0, 784), dtype=np.uint8)
    predictions = small_gemm.predict(empty)
    assert predictions.shape == (0,)
    assert predictions.dtype == np.uint8
    distances, neighbours = small_gemm.kneighbors(empty)
    assert neighbours.shape == (0, 3)
    assert neighbours.dtype == np.int64
    assert distances.shape == (0, 3)
    assert distances.dtype == np.float32


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 784), dtype=np.float32),
        np.zeros((0, 784), dtype=np.int64),
        np.zeros((2, 783), dtype=np.uint8),
        np.zeros((784,), dtype=np.uint8),
        np.zeros((2, 28, 27), dtype=np.uint8),
    ],
    ids=["float32", "empty-int64", "783-pixels", "1-d", "28x27"],
)
def test_bad_images_raise_data_error(small_gemm: GemmKnn, images: np.ndarray) -> None:
    with pytest.raises(DataError, match=r"images must be uint8 of shape \(n, 784\); got"):
        small_gemm.predict(images)
    with pytest.raises(DataError, match=r"images must be uint8 of shape \(n, 784\); got"):
        small_gemm.kneighbors(images)[1]


def test_sklearn_reference_checks_images_too() -> None:
    with pytest.raises(DataError, match=r"images must be uint8 .* got float64"):
        predict_sklearn(small_knn_model(50), np.zeros((2, 784)))


# --- KnnModel validation ------------------------------------------------------------------------


def test_knn_model_validation() -> None:
    good = small_knn_model(20)
    with pytest.raises(DataError, match=r"reference must be uint8 of shape \(n, 784\); got float64"):
        KnnModel(good.reference.astype(np.float64), good.labels, good.scaler)
    with pytest.raises(ValueError, match=r"labels must be uint8 of shape \(20,\); got int64 \(20,\)"):
        KnnModel(good.reference, good.labels.astype(np.int64), good.scaler)
    with pytest.raises(ValueError, match=r"labels must be uint8 of shape \(20,\); got uint8 \(19,\)"):
        KnnModel(good.reference, good.labels[:19], good.scaler)
    for n_neighbors in (0, -1, 21):
        with pytest.raises(ValueError, match=rf"n_neighbors must be in \[1, 20\]; got {n_neighbors}"):
            KnnModel(good.reference, good.labels, good.scaler, n_neighbors)


# --- files ------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = small_knn_model(150, n_neighbors=5)
    written = save_knn(model, tmp_path)
    assert written == [tmp_path / KNN_ARRAYS, tmp_path / KNN_PARAMS]
    loaded = load_knn(tmp_path)
    assert loaded.n_neighbors == 5
    for name in ("reference", "labels"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
        assert getattr(loaded, name).dtype == np.uint8
    np.testing.assert_array_equal(loaded.scaler.mean, model.scaler.mean)
    np.testing.assert_array_equal(loaded.scaler.scale, model.scaler.scale)
    queries = small_knn_model(40, offset=150).reference
    np.testing.assert_array_equal(GemmKnn(loaded).predict(queries), GemmKnn(model).predict(queries))

    from_bytes = knn_from_bytes(
        (tmp_path / KNN_ARRAYS).read_bytes(), (tmp_path / KNN_PARAMS).read_bytes()
    )
    np.testing.assert_array_equal(from_bytes.reference, model.reference)
    assert from_bytes.n_neighbors == 5

    params = json.loads((tmp_path / KNN_PARAMS).read_text())
    assert params["n_neighbors"] == 5
    assert params["n_reference"] == 150
    assert params["metric"] == "euclidean"


def npz_member_dtypes(path: Path) -> dict[str, np.dtype]:
    """Each array's dtype read from its .npy header alone (no loader, no pickle involved)."""
    dtypes = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                major, _ = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if major == 1
                               else np.lib.format.read_array_header_2_0)
                _, _, dtype = read_header(member)
                dtypes[name.removesuffix(".npy")] = dtype
    return dtypes


def test_npz_holds_no_object_arrays(tmp_path: Path) -> None:
    # What save_knn writes, checked from the file's headers: plain numeric arrays only.
    save_knn(small_knn_model(30), tmp_path)
    dtypes = npz_member_dtypes(tmp_path / KNN_ARRAYS)
    assert dtypes == {"reference": np.dtype(np.uint8), "labels": np.dtype(np.uint8),
                      "mean": np.dtype(np.float64), "scale": np.dtype(np.float64)}
    assert not any(dtype.hasobject for dtype in dtypes.values())


def test_npz_header_reader_sees_object_arrays(tmp_path: Path) -> None:
    # The check above can fail: a file with an object array is reported as one.
    np.savez(tmp_path / "objects.npz", labels=np.array([1, 2], dtype=object))
    assert npz_member_dtypes(tmp_path / "objects.npz")["labels"].hasobject


def test_pickled_npz_is_refused(tmp_path: Path) -> None:
    model = small_knn_model(30)
    buffer = io.BytesIO()
    np.savez(
        buffer, reference=model.reference, labels=model.labels.astype(object),
        mean=model.scaler.mean, scale=model.scaler.scale,
    )
    params = json.dumps({"n_neighbors": 3}).encode()
    with pytest.raises(ValueError, match="allow_pickle"):
        knn_from_bytes(buffer.getvalue(), params)


@pytest.mark.parametrize("missing", [KNN_ARRAYS, KNN_PARAMS])
def test_load_knn_missing_file(tmp_path: Path, missing: str) -> None:
    save_knn(small_knn_model(30), tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(ModelNotFoundError, match=rf"{missing}: KNN model file not found"):
        load_knn(tmp_path)


def test_sklearn_reference_is_brute_force_on_float64_pixels(model3: KnnModel) -> None:
    classifier = sklearn_classifier(model3)
    assert classifier.algorithm == "brute"
    assert classifier.n_neighbors == 3
    assert classifier._fit_X.dtype == np.float64


def test_one_sklearn_reference_for_tests_and_bench(model3: KnnModel, subset: Subset) -> None:
    from mnist_dist.bench.baselines import sklearn_knn_predictor

    queries = subset.queries[:200]
    np.testing.assert_array_equal(
        sklearn_knn_predictor(model3)(queries), predict_sklearn(model3, queries)
    )
    np.testing.assert_array_equal(
        predict_sklearn(model3, queries, classifier=sklearn_classifier(model3)),
        vote(model3.labels[sklearn_kneighbors(model3, queries)]),
    )


@pytest.mark.parametrize(("shortlist", "expected"), [(1, 3), (8, 8), (10_000, 200)])
def test_search_settings_are_parameters_clamped_by_the_constructor(
    shortlist: int, expected: int
) -> None:
    gemm = GemmKnn(small_knn_model(200), block_rows=17, shortlist=shortlist)
    assert (gemm.block_rows, gemm.shortlist) == (17, expected)


# --- the compiled full scan (the fallback) ------------------------------------------------------


def test_early_abandon_never_drops_a_row_on_the_limit() -> None:
    # Identity weights: distances are exact integers, so a row can sit exactly on the limit.
    query, row = np.zeros(784, np.uint8), np.zeros(784, np.uint8)
    row[[0, 100, 700]] = [3, 4, 12]  # distance 9 + 16 + 144 = 169
    weights = np.ones(784)
    assert weighted_distance(query, row, weights, np.inf) == 169.0
    assert weighted_distance(query, row, weights, 169.0) == 169.0
    assert weighted_distance(query, row, weights, 168.0) == np.inf
    # Abandoned after the first chunk already exceeds the limit, before the rest is summed.
    assert weighted_distance(query, row, weights, 8.0) == np.inf


@pytest.mark.parametrize("first", [[], [39, 38, 37], [5, 2, 3, 1]])
def test_full_scan_ties_go_to_the_lower_index_whatever_it_scans_first(first: list[int]) -> None:
    rows, _ = filler_rows(40)
    rows[[1, 2, 3, 5, 38, 39]] = one_pixel_rows({1: 10, 2: 10, 3: 20, 5: 10, 38: 10, 39: 5}, 40)[
        [1, 2, 3, 5, 38, 39]]
    neighbours = full_scan(BLANK[0], rows, np.ones(784), np.array(first, np.int64), 3)
    np.testing.assert_array_equal(neighbours, [39, 1, 2])


def test_fallback_equals_sklearn_on_noisy_and_unusual_digits(
    model3: KnnModel, subset: Subset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_dist.bench.knn_inputs import hard_inputs

    queries = np.concatenate(list(hard_inputs(subset.queries[:15], subset.reference).values()))
    expected = sklearn_kneighbors(model3, queries)
    gemm = GemmKnn(model3, block_rows=16, search="shortlist")
    monkeypatch.setattr(knn, "GEMM_ERROR_BOUND", 1e9)  # every query takes the full scan
    np.testing.assert_array_equal(gemm.kneighbors(queries)[1], expected)


# --- the bound search: distances, hard inputs, queries on the bound -----------------------------


def direct_distances(model: KnnModel, queries: np.ndarray) -> np.ndarray:
    """Every standardised squared distance (n, n_ref), float64, the plain way."""
    y = model.scaler.transform(model.reference, np.float64)
    return np.stack([np.square(x - y).sum(axis=1)
                     for x in model.scaler.transform(queries, np.float64)])


@pytest.fixture(scope="module")
def hard_queries(subset: Subset) -> np.ndarray:
    from mnist_dist.bench.knn_inputs import hard_inputs

    crafted = np.stack([np.zeros(784), np.full(784, 255), subset.reference[10],
                        subset.reference[20] // 2 + subset.queries[5] // 2]).astype(np.uint8)
    sets = hard_inputs(subset.queries[:40], subset.reference)
    return np.concatenate([crafted, *sets.values()])


@pytest.mark.parametrize("search", SEARCHES)
def test_kneighbors_distances_are_the_float64_distances(
    search: str, model3: KnnModel, hard_queries: np.ndarray
) -> None:
    gemm = GemmKnn(model3, search=search)
    distances, neighbours = gemm.kneighbors(hard_queries)
    assert distances.dtype == np.float32 and distances.shape == (len(hard_queries), 3)
    assert (np.diff(distances, axis=1) >= 0).all()
    exact = np.sqrt(np.take_along_axis(direct_distances(model3, hard_queries), neighbours, 1))
    np.testing.assert_allclose(distances, exact, rtol=2e-7, atol=1e-6)
    np.testing.assert_array_equal(gemm.predict(hard_queries), vote(model3.labels[neighbours]))


def test_bound_search_equals_sklearn_on_hard_inputs(
    model3: KnnModel, hard_queries: np.ndarray
) -> None:
    gemm = GemmKnn(model3)
    np.testing.assert_array_equal(gemm.kneighbors(hard_queries)[1],
                                  sklearn_kneighbors(model3, hard_queries))
    np.testing.assert_array_equal(gemm.predict(hard_queries),
                                  predict_sklearn(model3, hard_queries))


def test_small_blocks_take_the_narrow_bound_and_equal_sklearn(
    model3: KnnModel, hard_queries: np.ndarray
) -> None:
    from mnist_dist.models.knn_bound import NARROW_ROWS

    gemm = GemmKnn(model3)
    assert gemm.index is not None
    wide, narrow = gemm.index.lower_bounds(hard_queries), gemm.index.lower_bounds(hard_queries,
                                                                                   True)
    # Looser (up to the bounds' float allowance, a fraction of the norms) on most references.
    assert (narrow <= wide + 1e-4 * np.abs(wide).max()).all() and (narrow < wide).mean() > 0.5
    one_by_one = np.concatenate([gemm.kneighbors(hard_queries[i : i + NARROW_ROWS])[1]
                                 for i in range(0, len(hard_queries), NARROW_ROWS)])
    np.testing.assert_array_equal(one_by_one, sklearn_kneighbors(model3, hard_queries))


@pytest.mark.parametrize("narrow", [False, True])
def test_lower_bounds_never_exceed_the_distances(
    model3: KnnModel, hard_queries: np.ndarray, narrow: bool
) -> None:
    gemm = GemmKnn(model3)
    assert gemm.index is not None
    bounds = gemm.index.lower_bounds(hard_queries, narrow)
    exact = direct_distances(model3, hard_queries)
    assert (bounds <= exact).all()
    # Tight where the query is a reference row: the bound of that row is (about) 0.
    assert bounds[2, 10] <= 0.0 <= exact[2, 10] + 1e-9
    assert np.median(exact - bounds) < 0.5 * np.median(exact)  # a bound that prunes


@pytest.mark.parametrize("queries", ["digits", "noise"])
def test_dense_and_sparse_rare_paths_give_identical_bounds(
    model3: KnnModel, hard_queries: np.ndarray, queries: str
) -> None:
    from mnist_dist.models.knn_bound import BOUND_ERROR
    from mnist_dist.models.knn_rare import (
        DENSE_SHARE,
        add_products,
        fold_dense,
        fold_sparse,
        touched,
    )

    index = GemmKnn(model3).index
    assert index is not None
    images = hard_queries if queries == "digits" else np.random.default_rng(5).integers(
        0, 256, (20, 784), dtype=np.uint8)
    n_tiles, _, width = index.tiles.shape
    pixels, scores, minima, _, _ = index._scores(images, np.empty((n_tiles, len(images), width),
                                                                  np.float32))
    c, ink = index.n_common, index.ink
    n_ref = len(index.reference)
    takes_dense = []
    for q in range(len(images)):
        products = np.zeros(n_ref)
        add_products(pixels[q, c:], index.weights[c:], ink.offsets, ink.rows, ink.values,
                     products)
        dense = (scores[:, q : q + 1].copy(), minima[q].copy())
        sparse = (scores[:, q : q + 1].copy(), minima[q].copy())
        fold_dense(dense[0], 0, dense[1], products, GROUP, BOUND_ERROR)
        fold_sparse(pixels[q, c:], ink.offsets, ink.rows, sparse[0], 0, sparse[1], products,
                    np.zeros(n_ref, np.bool_), GROUP, BOUND_ERROR)
        for got, expected in zip(dense, sparse, strict=True):
            np.testing.assert_array_equal(got, expected)
        if touched(pixels[q, c:], ink.offsets):
            assert (dense[0] < scores[:, q : q + 1]).any()  # the rare ink lowered some bounds
        takes_dense.append(touched(pixels[q, c:], ink.offsets) > DENSE_SHARE * n_ref)
    # In a search noise takes the dense path; digits the sparse one, but for an all-ink image.
    if queries == "noise":
        assert all(takes_dense)
    else:
        assert takes_dense[1] and sum(takes_dense) < len(images) / 4


def on_bound_model(base: int) -> tuple[KnnModel, np.ndarray, np.ndarray]:
    """2,000 rows equal to `base` but 400 raised at one of 10 pixels by 10, 20 or 30 (each
    pixel in 2% of the rows: rare when base is 0, common otherwise), a query raised by 15 at
    the first: rows raised there by 10 or 20 tie at 25, and x − y lies on a pixel axis the
    principal basis spans (or in the sparse part), so the bound equals the distance."""
    rows = np.full((2000, 784), base, np.uint8)
    pixels = np.arange(10) * 71 + 30
    raised = np.arange(400)
    rows[raised, pixels[raised % 10]] += (10 * (1 + raised // 10 % 3)).astype(np.uint8)
    labels = (np.arange(2000) * 7 % 10).astype(np.uint8)
    query = np.full((1, 784), base, np.uint8)
    query[0, pixels[0]] += 15
    return KnnModel(rows, labels, identity_scaler(), 5), query, rows


@pytest.mark.parametrize("base", [0, 100])
def test_ties_that_sit_exactly_on_the_bound(base: int) -> None:
    model, query, rows = on_bound_model(base)
    gemm = GemmKnn(model)
    squared = np.square(rows.astype(np.int64) - query).sum(axis=1)
    expected = np.lexsort((np.arange(len(rows)), squared))[:5]
    assert squared[expected].tolist() == [25] * 5
    assert gemm.index is not None
    bounds = gemm.index.lower_bounds(query)[0]
    # On the bound up to its float allowance (BOUND_ERROR of the norms).
    assert (bounds <= squared).all() and bounds[expected].min() > 24.9
    distances, neighbours = gemm.kneighbors(query)
    np.testing.assert_array_equal(neighbours, [expected])
    np.testing.assert_array_equal(distances, [[5.0] * 5])
    np.testing.assert_array_equal(gemm.predict(query), vote(model.labels[expected][None]))


def test_grouping_is_a_permutation_in_runs_of_whole_groups() -> None:
    points = np.random.default_rng(3).normal(size=(1000, 5))
    order = tree_order(points, GROUP)
    assert sorted(order.tolist()) == list(range(1000))
    # Each run of GROUP rows is one leaf: a box on the split coordinates, so its rows are closer
    # to each other than rows picked at random.
    runs = points[order[: 1000 // GROUP * GROUP]].reshape(-1, GROUP, 5)
    spread = np.linalg.norm(runs - runs.mean(axis=1, keepdims=True), axis=2).mean()
    random_spread = np.linalg.norm(points - points.mean(axis=0), axis=1).mean()
    assert spread < 0.8 * random_spread


def test_group_minima_are_the_smallest_bound_of_each_group(model3: KnnModel,
                                                           subset: Subset) -> None:
    index = GemmKnn(model3).index
    assert index is not None
    n_tiles, _, width = index.tiles.shape
    buffer = np.empty((n_tiles, 50, width), np.float32)
    _, scores, minima, _, _ = index._scores(subset.queries[:50], buffer)
    flat = scores.transpose(1, 0, 2).reshape(50, -1)
    np.testing.assert_array_equal(minima, flat.reshape(50, -1, GROUP).min(axis=2))
    assert np.isposinf(flat[:, len(model3.reference) :]).all()  # padding never lowers one


def test_ties_spread_over_several_groups_go_to_the_lowest_indices(subset: Subset) -> None:
    # 60 rows at exactly the same distance (the query with one pixel moved by 40, weights 1),
    # scattered over 5,000 real digits: the grouping puts them in several groups, which the
    # search visits in order of their smallest bound, not of index; the 5 lowest indices win.
    rng = np.random.default_rng(4)
    rows = subset.reference.copy()
    query = subset.queries[[0]]
    tied = np.sort(rng.choice(len(rows), 60, replace=False))
    for row, pixel in zip(tied, rng.choice(784, 60, replace=False), strict=True):
        rows[row] = query[0]
        value = int(query[0, pixel])
        rows[row, pixel] = value + 40 if value < 40 else value - 40
    model = KnnModel(rows, subset.labels, identity_scaler(), 5)
    gemm = GemmKnn(model)
    assert gemm.index is not None
    positions = np.argsort(gemm.index.original)[tied]
    assert len(np.unique(positions // GROUP)) > 1
    distances, neighbours = gemm.kneighbors(query)
    np.testing.assert_array_equal(neighbours, [tied[:5]])
    np.testing.assert_array_equal(distances, [[40.0] * 5])
    np.testing.assert_array_equal(gemm.predict(query), predict_sklearn(model, query))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 23, 24, 70])
def test_each_matmul_backend_is_a_float32_product_within_its_error_bound(
    rows: int, backend: str
) -> None:
    # The bound's proof allows γ_k·Σ|terms| per entry: a product in lower precision (bf16, tf32)
    # would break it by orders of magnitude.
    rng = np.random.default_rng(5)
    a = rng.normal(size=(rows, 98)).astype(np.float32)
    b = rng.normal(size=(98, 640)).astype(np.float32)
    product = TileProduct(98, backend)
    assert product.backend_for(rows) == backend
    out = product(a, b, np.empty((rows, 640), np.float32))
    exact = a.astype(np.float64) @ b.astype(np.float64)
    terms = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    gamma = 98 * 2.0**-24 / (1 - 98 * 2.0**-24)
    assert (np.abs(out - exact) <= gamma * terms).all()
    assert np.abs(out - exact).max() > 0  # really float32, not a float64 pass


def test_calibration_keeps_the_kernel_measured_faster_per_row_count(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # Make each kernel slow where the other should win: numpy from 32 rows, MLAS below.
    product = TileProduct(98)
    real_run = TileProduct.run

    def slowed(self: TileProduct, backend: str, a: np.ndarray, b: np.ndarray,
               out: np.ndarray) -> np.ndarray:
        if (backend == "numpy") == (len(a) >= 32):
            time.sleep(0.002)
        return real_run(self, backend, a, b, out)

    monkeypatch.setattr(TileProduct, "run", slowed)
    choices = product.calibrate(np.ones((98, 640), np.float32), 100)
    assert [c.rows for c in choices] == [1, 8, 32, 100]
    assert [c.backend for c in choices] == ["numpy", "numpy", "onnxruntime", "onnxruntime"]
    assert all(set(c.gflops) == set(BACKENDS) and min(c.gflops.values()) > 0 for c in choices)
    assert [product.backend_for(n) for n in (0, 1, 7, 8, 31, 32, 99, 100, 5000)] == [
        "numpy"] * 5 + ["onnxruntime"] * 4


def test_phase_seconds_cover_the_search(model3: KnnModel, subset: Subset) -> None:
    from mnist_dist.models.knn_bound import PHASES

    gemm = GemmKnn(model3)
    phases: dict[str, float] = {}
    started = time.perf_counter()
    _, timed = gemm.kneighbors(subset.queries[:300], phases)
    wall = time.perf_counter() - started
    assert set(phases) == set(PHASES) and min(phases.values()) > 0
    assert sum(phases.values()) <= wall
    np.testing.assert_array_equal(timed, gemm.kneighbors(subset.queries[:300])[1])


def test_the_knn_index_is_calibrated_when_built(model3: KnnModel) -> None:
    index = GemmKnn(model3, block_rows=64).index
    assert index is not None
    assert [c.rows for c in index.matmul.choices] == [1, 8, 32, 64]
    for choice in index.matmul.choices:
        assert choice.backend == max(choice.gflops, key=choice.gflops.__getitem__)


@pytest.mark.parametrize("case", ["float64 a", "wrong k", "strided b", "wrong out shape"])
def test_matmul_refuses_what_it_cannot_bind(case: str) -> None:
    a, b = np.ones((4, 8), np.float32), np.ones((8, 16), np.float32)
    out = np.empty((4, 16), np.float32)
    if case == "float64 a":
        a = a.astype(np.float64)
    elif case == "wrong k":
        b = np.ones((9, 16), np.float32)
    elif case == "strided b":
        b = np.ones((8, 32), np.float32)[:, ::2]
    else:
        out = np.empty((4, 15), np.float32)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        TileProduct(8)(a, b, out)


def test_one_gemm_knn_shared_by_threads_answers_each_as_alone(model3: KnnModel,
                                                              subset: Subset) -> None:
    # A Dask worker's threads share one GemmKnn (one onnxruntime session, numba kernels):
    # concurrent calls must not share buffers.
    gemm = GemmKnn(model3)
    batches = [subset.queries[i::4] for i in range(4)]
    alone = [gemm.kneighbors(batch) for batch in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(gemm.kneighbors, batches * 3))
    for i, (distances, neighbours) in enumerate(together):
        np.testing.assert_array_equal(distances, alone[i % 4][0])
        np.testing.assert_array_equal(neighbours, alone[i % 4][1])


@pytest.mark.parametrize("k", [98, 200])  # 200: a two-byte varint
def test_the_hand_written_matmul_model_is_what_onnx_writes(k: int) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["product"])], "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", k]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, "w"])],
        [helper.make_tensor_value_info("product", TensorProto.FLOAT, ["n", "w"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    assert matmul_model(k) == model.SerializeToString()
