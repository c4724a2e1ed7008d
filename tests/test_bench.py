"""jobs.bench: a quick run end to end as users run it, the sweep without baselines, the nightly
history and its regression rule on synthetic records, and the nightly schedule files."""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from jobs import bench as bench_job
from mnist_dist.bench import history
from mnist_dist.bench.knn_inputs import BORDER_PIXELS, border_ring, hard_inputs
from mnist_dist.bench.roofline import knn_flops, mlp_flops
from mnist_dist.bench.run import TARGET_MAXIMA, TARGETS, commit_of, targets
from mnist_dist.bench.sweep import WARMUP_ROWS, BenchSweepSpec, model_bytes, sweep_on_worker
from mnist_dist.bench.tuning import KNN_SETTINGS
from mnist_dist.errors import SpecError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.knn import GemmKnn, KnnModel
from mnist_dist.scoring.sweep import time_batches
from tests.helpers import small_knn_model
from tests.test_bench_page import key_paths
from tests.test_bench_page import sample as bench_sample

ROOT = Path(__file__).resolve().parents[1]
NIGHTLY = ROOT / "deploy" / "nightly"
CRON = re.compile(r"^(\S+\s+){4}\S+$")


# --- a quick run, the way users run it -----------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory, small_store: Path, small_models: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable, "-m", "jobs.bench", "--quick", "--store", str(small_store),
        "--models", str(small_models), "--out", str(out / "run"),
        "--history", str(out / "history.jsonl"), "--batch-sizes", "1,10,100",
        "--partition-sizes", "150,300",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False
    )
    return done, out


@pytest.mark.cluster
def test_quick_bench_writes_every_section(quick_run: tuple[Any, Path]) -> None:
    done, out = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads((out / "run" / "bench.json").read_text())
    assert document["schema"] == "mnist-dist-bench/1"
    assert document["quick"] is True
    assert document["effective_settings"]["score"]["split"] == document["settings"]["split"]
    roof = document["roofline"]
    assert roof["gflops_1thread"]["median"] > 0 and roof["gflops_all"]["median"] > 0
    assert set(roof["images_per_second_1thread"]) == {"knn", "mlp"}
    models = {row["model"] for row in document["throughput"]}
    assert {"knn", "mlp", "sklearn_knn"} <= models
    if importlib.util.find_spec("tensorflow") is not None:
        # With TensorFlow installed the Keras baseline must have run, not been skipped quietly.
        assert document["baselines"]["skipped"] is None
        assert "keras_mlp" in models
    for row in document["throughput"]:
        assert row["batch_size"] in (1, 10, 100)
        assert 0 < row["latency_p50_ms"] <= row["latency_p95_ms"]
    paired = document["paired"]
    assert len(paired["rounds"]) == 2
    assert paired["knn_fraction_of_roofline"] > 0 and paired["knn_over_sklearn"] > 0
    assert document["figures"]["knn_over_sklearn"] == paired["knn_over_sklearn"]
    assert [(row["search"], row["block_rows"], row["shortlist"])
            for row in document["tuning"]["knn"]] == list(KNN_SETTINGS)
    partitions = [row["partition_rows"] for row in document["end_to_end"]]
    assert partitions == sorted({150, 300, document["default_partition_rows"]})
    for row in document["end_to_end"]:
        assert row["images"] == 600
        assert row["dask_images_per_second"] > 0 and row["in_process_images_per_second"] > 0
        assert row["max_worker_peak_rss"] > 0
    assert document["peers"]["knn"]["predictions_agree"] == 1.0
    assert document["peers"]["mlp"]["predictions_agree"] == 1.0
    assert [run["workers"] for run in document["scaling"]["runs"]] == [1, 2]
    assert [run["images"] for run in document["memory_vs_images"]["runs"]] == [300, 600]
    assert {t["figure"] for t in document["targets"]} >= set(TARGETS) | set(TARGET_MAXIMA)
    hard = document["knn_inputs"]
    assert [row["input"] for row in hard["rows"]] == [
        "test", "deformed", "salt_and_pepper", "border_ink", "single_pixel", "one_pixel_edit",
        "shifted", "uniform_noise", "blurred"]
    for row in hard["rows"]:
        assert row["images_per_second"] > 0 and row["max_single_query_ms"] > 0
    assert document["figures"]["knn_worst_input_over_test"] == min(
        row["over_test"] for row in hard["rows"][1:])
    assert document["figures"]["knn_max_query_ms"] == max(
        row["max_single_query_ms"] for row in hard["rows"])
    assert document["figures"]["knn_latency_p50_ms_batch1"] == next(
        row["latency_p50_ms"] for row in document["throughput"]
        if row["model"] == "knn" and row["batch_size"] == 1)
    assert document["regressions"] == []


@pytest.mark.cluster
def test_quick_bench_compares_with_faiss_and_the_sgemm_peaks(quick_run: tuple[Any, Path]
                                                              ) -> None:
    done, out = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads((out / "run" / "bench.json").read_text())
    figures = document["figures"]
    faiss = document["knn_inputs"]["faiss"]
    assert faiss["installed"] is True  # a dependency of the bench
    assert faiss["images_per_second"] > 0 and faiss["predictions_agree"] == 1.0
    rows = document["knn_inputs"]["rows"]
    assert all(row["over_faiss"] > 0 for row in rows)
    assert rows[0]["faiss_agrees"] == 1.0  # the test split
    assert figures["knn_over_faiss"] == faiss["knn_over_faiss"] == rows[0]["over_faiss"]
    assert figures["knn_worst_input_over_faiss"] == min(row["over_faiss"] for row in rows[1:])
    gemm = document["knn_gemm"]
    assert gemm["skipped"] is None and len(gemm["rounds"]) == 2
    assert set(gemm["sgemm_gflops"]) == {"numpy", "onnxruntime"}
    assert all(rate > 0 for rate in gemm["sgemm_gflops"].values())
    assert gemm["gemm_gflops"] > 0 and gemm["gemm_over_best_sgemm"] > 0
    assert list(gemm["phases"]) == ["project", "gemm", "group_minima", "rare_and_exact"]
    assert all(seconds >= 0 for seconds in gemm["phases"].values())
    assert sum(gemm["phases"].values()) <= gemm["wall_seconds"]
    assert gemm["choices"] and gemm["choices"][0]["rows"] == 1
    assert all(c["backend"] in ("numpy", "onnxruntime") and set(c["gflops"]) == {
        "numpy", "onnxruntime"} for c in gemm["choices"])
    assert gemm["calibration_seconds"] > 0 and gemm["load_seconds"] > 0
    assert figures["knn_calibration_seconds"] == gemm["calibration_seconds"]
    assert figures["knn_gemm_over_best_sgemm"] == gemm["gemm_over_best_sgemm"]
    fresh = document["fresh_workers"]
    assert fresh["skipped"] is None and len(fresh["runs"]) == 1
    run = fresh["runs"][0]
    assert run["images"] == 600 and run["dask_seconds"] > 0 and run["in_process_seconds"] > 0
    assert 0 < run["load_seconds"] and run["worker"].startswith("tcp://")
    assert figures["worker_ready_seconds"] == run["load_seconds"]
    assert figures["score_over_in_process_with_load"] == pytest.approx(
        run["in_process_seconds"] / run["dask_seconds"])
    shown = {row["figure"] for row in document["targets"]}
    assert {"knn_over_faiss", "knn_worst_input_over_faiss", "knn_gemm_over_best_sgemm",
            "knn_calibration_seconds", "score_over_in_process_with_load",
            "worker_ready_seconds", "mlp_fraction_of_roofline_batch1000"} <= shown
    for line in ("KNN vs FAISS IndexFlatL2", "sgemm peak, 1 thread", "KNN search phases",
                 "KNN kernel chosen at load", "fresh workers, models loaded inside the timing"):
        assert line in done.stdout, line
    page = (out / "run" / "bench.html").read_text()
    assert "<h2>KNN against FAISS and the matmul peak</h2>" in page
    assert "<h2>Fresh workers</h2>" in page


@pytest.mark.cluster
def test_quick_bench_prints_the_table_and_writes_page_and_history(
    quick_run: tuple[Any, Path],
) -> None:
    done, out = quick_run
    assert "roofline: float32 matmul" in done.stdout
    assert "targets: not checked (--quick" in done.stdout and "NOT MET" not in done.stdout
    assert (out / "run" / "bench.txt").read_text().startswith("bench ")
    page = (out / "run" / "bench.html").read_text()
    assert page.count("data:image/png;base64,") >= 2
    records = history.read_history(out / "history.jsonl")
    assert len(records) == 1
    assert records[0]["figures"] == json.loads((out / "run" / "bench.json").read_text())["figures"]


@pytest.mark.cluster
def test_quick_bench_times_the_fixed_cost_on_its_warm_client_only(
    quick_run: tuple[Any, Path],
) -> None:
    done, out = quick_run
    document = json.loads((out / "run" / "bench.json").read_text())
    fixed, warm = document["fixed_cost"], document["fixed_cost"]["warm"]
    assert (warm["runs"], warm["n_images"], warm["partitions"]) == (1, 600, 1)
    assert warm["wall_seconds"] >= warm["task_seconds"] >= 0
    assert warm["fixed_seconds"] == pytest.approx(warm["wall_seconds"] - warm["task_seconds"])
    assert fixed["fresh"] is None  # --quick skips the subprocess
    assert fixed["targets"] == {"warm_fixed_seconds": 1.0, "fresh_wall_seconds": 15.0}
    assert fixed["met"] == {"warm_fixed_seconds": warm["fixed_seconds"] <= 1.0,
                            "fresh_wall_seconds": None}
    rows = {row["figure"]: row["met"] for row in document["targets"]}
    assert {name: rows[name] for name in fixed["met"]} == fixed["met"]
    assert "fixed cost: one partition" in done.stdout and "md.score (median of 1)" in done.stdout
    assert "fresh LocalCluster, python -m jobs.score  " in done.stdout
    assert "skipped (--quick)" in done.stdout
    page = (out / "run" / "bench.html").read_text()
    assert "<h2>Fixed cost</h2>" in page and "md.score (median of 1)" in page
    assert "<td>fresh LocalCluster, python -m jobs.score</td><td>skipped (--quick)</td>" in page


@pytest.mark.cluster
def test_the_pages_sample_has_the_keys_of_a_fresh_quick_run(quick_run: tuple[Any, Path]
                                                            ) -> None:
    done, out = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads((out / "run" / "bench.json").read_text())
    assert key_paths(bench_sample()) == key_paths(fresh)


def test_sweep_without_baselines_says_so(small_store: Path, small_models: Path) -> None:
    spec = BenchSweepSpec(batch_sizes=(1, 7), min_repeats=1, min_seconds=0.0, matmul_size=64)
    swept = sweep_on_worker(
        ModelRef.from_directory(small_models), str(small_store), "test", spec, 1, False
    )
    assert {row["model"] for row in swept["rows"]} == {"knn", "mlp"}
    assert [row["batch_size"] for row in swept["rows"]] == [1, 7, 1, 7]
    assert swept["skipped"] == "baselines skipped (--skip-baselines)"
    assert swept["n_reference"] == 3000
    assert len(swept["matmul_1thread"]) >= 2


def test_timing_loop_warms_up_then_stops_at_max_seconds() -> None:
    calls: list[int] = []
    spec = BenchSweepSpec(batch_sizes=(100,), min_repeats=3, max_seconds=1e-12)
    times = time_batches(lambda x: calls.append(len(x)), np.zeros((300, 784), np.uint8), 100,
                         spec, warmup_rows=WARMUP_ROWS)
    assert calls == [WARMUP_ROWS, 100] and len(times) == 1  # max_seconds beats min_repeats
    with pytest.raises(SpecError, match="batch_sizes must be positive"):
        BenchSweepSpec(batch_sizes=())


def test_model_bytes_counts_the_reference_once() -> None:
    model = small_knn_model()
    knn = GemmKnn(model)
    assert knn.reference is model.reference  # contiguous already: GemmKnn keeps the model's
    own = sum(value.nbytes for name, value in vars(knn).items()
              if isinstance(value, np.ndarray) and name != "reference")
    own += sum(value.nbytes for value in vars(knn.index).values()  # the bound search's arrays
               if isinstance(value, np.ndarray))
    kept = model.reference.nbytes + model.labels.nbytes + 2 * 784 * 8  # + scaler mean, scale
    assert model_bytes(knn) == own + kept
    # A non-contiguous reference is copied: then both arrays are resident and both count.
    strided = np.zeros((600, 784), np.uint8)[::2]
    copied = GemmKnn(KnnModel(strided, model.labels, model.scaler))
    contiguous = GemmKnn(KnnModel(np.ascontiguousarray(strided), model.labels, model.scaler))
    assert model_bytes(copied) == model_bytes(contiguous) + model.reference.nbytes


# --- roofline arithmetic and targets -------------------------------------------------------


def test_flops_per_image() -> None:
    assert knn_flops(56_000) == 2 * 784 * 56_000  # ≈ 88 MFLOP
    assert mlp_flops((256, 128, 64)) == 2 * (784 * 256 + 256 * 128 + 128 * 64 + 64 * 10)
    assert mlp_flops(()) == 2 * 784 * 10


def test_targets_met_not_met_and_not_measured() -> None:
    values = {"knn_fraction_of_roofline": 0.9, "knn_over_sklearn": 1.5,
              "memory_full_over_half": 1.02}
    rows = {row["figure"]: row for row in targets(values)}
    assert rows["knn_fraction_of_roofline"]["met"] is True
    assert rows["knn_over_sklearn"]["met"] is False
    assert rows["mlp_over_keras_batch1"]["met"] is None
    assert rows["memory_full_over_half"]["met"] is True
    maxima = {row["figure"]: row for row in targets({"knn_latency_p50_ms_batch1": 0.8,
                                                      "knn_max_query_ms": 25.0,
                                                      "worker_ready_seconds": 0.6})}
    assert maxima["knn_latency_p50_ms_batch1"]["met"] is True
    assert maxima["knn_max_query_ms"]["met"] is False
    assert maxima["worker_ready_seconds"]["met"] is False
    assert maxima["knn_calibration_seconds"]["met"] is None


# --- hard inputs of the KNN bench ------------------------------------------------------------


def test_hard_inputs_are_what_their_names_say(vendored: Any) -> None:
    test = vendored.x_test[:40]
    sets = hard_inputs(test, vendored.x_train)
    assert set(sets) == {"deformed", "salt_and_pepper", "border_ink", "single_pixel",
                         "one_pixel_edit", "shifted", "uniform_noise", "blurred"}
    for images in sets.values():
        assert images.shape == test.shape and images.dtype == np.uint8
    changed = sets["salt_and_pepper"] != test
    assert 0.005 < changed.mean() < 0.03
    assert set(np.unique(sets["salt_and_pepper"][changed])) <= {0, 255}
    ring = border_ring()
    assert len(ring) == 784 - 24 * 24
    added = (sets["border_ink"] != test)
    assert not added[:, np.setdiff1d(np.arange(784), ring)].any()
    assert (np.count_nonzero(sets["border_ink"][:, ring] == 255, axis=1) >= BORDER_PIXELS).all()
    assert (np.count_nonzero(sets["single_pixel"], axis=1) == 1).all()
    assert (sets["deformed"] != test).any(axis=1).all()
    edits = sets["one_pixel_edit"] != vendored.x_train[:40]
    assert (np.count_nonzero(edits, axis=1) == 1).all()
    square = test.reshape(-1, 28, 28)
    moved = sets["shifted"].reshape(-1, 28, 28)
    assert np.array_equal(moved[:, 2:, 2:], square[:, :26, :26])
    assert not moved[:, :2].any() and not moved[:, :, :2].any()
    assert np.count_nonzero(sets["uniform_noise"]) > 0.99 * sets["uniform_noise"].size
    assert 100 < sets["uniform_noise"].mean() < 155
    # A blur spreads ink: more pixels inked, none brighter than the brightest neighbour.
    assert (np.count_nonzero(sets["blurred"], axis=1) > np.count_nonzero(test, axis=1)).all()
    assert sets["blurred"].max() <= test.max()
    assert np.array_equal(hard_inputs(test, vendored.x_train)["salt_and_pepper"],
                          sets["salt_and_pepper"])


def test_commit_is_read_from_git_files_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BENCH_COMMIT", raising=False)
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert commit_of(tmp_path) == "a" * 40
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text("# pack-refs\n" + "b" * 40 + " refs/heads/main\n")
    assert commit_of(tmp_path) == "b" * 40
    monkeypatch.setenv("GITHUB_SHA", "c" * 40)
    assert commit_of(tmp_path) == "c" * 40
    assert commit_of(tmp_path / "nowhere") == "c" * 40


# --- history and regressions (synthetic records) -------------------------------------------


def record(knn: float, rss: float = 500e6, cpu: str = "cpu-a", when: str = "2026-01-01") -> dict:
    return {
        "created": when, "machine": {"cpu": cpu, "cores": 2, "memory_bytes": 8 << 30},
        "figures": {"knn_images_per_second": knn, "max_worker_peak_rss": rss,
                    "dask_over_in_process": 0.95},
    }


def test_history_append_and_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "history.jsonl"
    assert history.read_history(path) == []
    for knn in (1000.0, 1010.0):
        history.append_record(path, record(knn))
    assert [r["figures"]["knn_images_per_second"] for r in history.read_history(path)] == [
        1000.0, 1010.0]
    assert len(path.read_text().splitlines()) == 2


def test_corrupt_history_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(record(1.0)) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"history.jsonl:2: not a JSON record"):
        history.read_history(path)


def test_drop_beyond_ten_percent_is_a_regression() -> None:
    past = [record(v) for v in (1000, 1010, 990, 1005, 995)]
    found = history.find_regressions(record(850), past)
    assert [r.figure for r in found] == ["figures.knn_images_per_second"]
    assert found[0].median == 1000
    assert found[0].change == pytest.approx(-0.15)
    assert history.find_regressions(record(920), past) == []  # within 10%
    assert history.find_regressions(record(2000), past) == []  # faster is never a regression


def test_noisy_history_widens_the_threshold_to_three_mads() -> None:
    past = [record(v) for v in (1000, 700, 1300, 800, 1200)]  # MAD 200 → allowed 600
    assert history.find_regressions(record(500), past) == []
    assert len(history.find_regressions(record(350), past)) == 1


def test_lower_is_better_figures_regress_upwards() -> None:
    past = [record(1000, rss=v) for v in (500e6, 505e6, 495e6)]
    found = history.find_regressions(record(1000, rss=600e6), past)
    assert [r.figure for r in found] == ["figures.max_worker_peak_rss"]
    assert history.find_regressions(record(1000, rss=300e6), past) == []


def test_only_the_same_machine_and_enough_runs_count() -> None:
    other = [record(5000, cpu="cpu-b") for _ in range(5)]
    assert history.find_regressions(record(1000), other) == []
    assert history.find_regressions(record(100), [record(1000), record(1000)]) == []
    past = other + [record(1000) for _ in range(3)]
    assert len(history.find_regressions(record(800), past)) == 1


def test_only_the_trailing_window_counts() -> None:
    past = [record(2000) for _ in range(20)] + [record(1000) for _ in range(history.WINDOW)]
    assert history.find_regressions(record(1000), past) == []


def test_cli_exits_1_on_regression(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mnist_dist.bench import render
    from mnist_dist.bench import run as bench_run
    from mnist_dist.cli import bench as bench_cli

    def fake_run(spec: Any) -> dict:
        return {"regressions": [{"figure": "figures.knn_images_per_second"}]}

    monkeypatch.setattr(bench_run, "run_bench", fake_run)
    monkeypatch.setattr(render, "table_text", lambda document: "table")
    assert render.TABLE_NAME == "bench.txt"
    assert bench_job.main(["--quick", "--out", str(tmp_path)]) == bench_cli.REGRESSION_EXIT
    monkeypatch.setattr(bench_run, "run_bench", lambda spec: {"regressions": []})
    assert bench_job.main(["--quick", "--out", str(tmp_path)]) == 0


def test_trend_plot_from_history() -> None:
    from mnist_dist.bench.render import trend_plot

    records = [record(v, when=f"2026-01-0{i + 1}") for i, v in enumerate((1000, 1020, 990))]
    assert trend_plot(records[:1]) is None
    assert trend_plot(records).startswith("data:image/png;base64,")


# --- the nightly schedule in every form -----------------------------------------------------


def bench_arguments(command: str | list[str]) -> list[str]:
    """The arguments after `-m jobs.bench` of a shell line or an argv list."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    start = next(i for i in range(len(words) - 1) if words[i : i + 2] == ["-m", "jobs.bench"])
    arguments = []
    for word in words[start + 2 :]:
        if word in {">>", ">", "2>&1", "|", "&&", ";"}:
            break
        arguments.append(word)
    return arguments


def check_bench_command(command: str | list[str]) -> None:
    arguments = bench_arguments(command)
    args = bench_job.parse_args(arguments)  # every flag must exist
    assert args.history is not None, "the nightly run must append to a history"
    assert not args.quick


def test_crontab_runs_the_bench_nightly() -> None:
    entries = [line for line in (NIGHTLY / "crontab").read_text().splitlines()
               if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(entries) == 1
    fields = entries[0].split(maxsplit=5)
    assert CRON.match(" ".join(fields[:5]))
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    check_bench_command(fields[5].replace("\\%", "%"))


def test_systemd_timer_starts_the_service() -> None:
    service = configparser.ConfigParser(interpolation=None)
    service.read(NIGHTLY / "mnist-dist-bench.service")
    assert service["Service"]["Type"] == "oneshot"
    check_bench_command(service["Service"]["ExecStart"])
    timer = configparser.ConfigParser(interpolation=None)
    timer.read(NIGHTLY / "mnist-dist-bench.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00"
    assert timer["Timer"]["Unit"] == "mnist-dist-bench.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_kubernetes_cronjob() -> None:
    manifest = yaml.safe_load((NIGHTLY / "cronjob.yaml").read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "CronJob")
    assert CRON.match(manifest["spec"]["schedule"])
    assert manifest["spec"]["concurrencyPolicy"] == "Forbid"
    pod = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    check_bench_command(container["command"])
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]  # whole CPUs: comparable runs
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    history_path = bench_job.parse_args(bench_arguments(container["command"])).history
    assert any(str(history_path).startswith(m) for m in mounts)


def test_github_actions_schedule() -> None:
    workflow = yaml.safe_load((NIGHTLY / "github-actions-bench.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as true
    (schedule,) = triggers["schedule"]
    assert CRON.match(schedule["cron"])
    (job,) = workflow["jobs"].values()
    runs = [step["run"] for step in job["steps"] if "jobs.bench" in step.get("run", "")]
    assert len(runs) == 1
    check_bench_command(runs[0])


def test_deploy_files_name_no_unknown_flag() -> None:
    # argparse exits 2 on an unknown flag: make sure the helper would notice one.
    with pytest.raises(SystemExit):
        check_bench_command("python -m jobs.bench --history h.jsonl --no-such-flag")
