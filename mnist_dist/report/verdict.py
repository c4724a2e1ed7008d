"""The report's verdict, computed from the run: which model wins and by how much, where each
fails most, time per image, size and training time, and what that means for choosing one.

Plain sentences (numbers already formatted) that the HTML page and report.md both put first.
"""

from __future__ import annotations

from typing import Any

from mnist_dist.report import analysis as an
from mnist_dist.report.formats import count, pct, points, sig, size
from mnist_dist.report.schema import is_labelled

L = an.LABELS
BATCHES = (1, 1000)  # the batch sizes the verdict quotes time per image at


def verdict(report: dict[str, Any]) -> list[str]:
    """The verdict's sentences: the headline first."""
    lines = failure_lines(report)
    lines += accuracy_lines(report) if is_labelled(report) else agreement_lines(report)
    lines += [speed_line(report), footprint_line(report)]
    choice = choice_line(report) if is_labelled(report) else None
    return lines + ([choice] if choice else [])


def failure_lines(report: dict[str, Any]) -> list[str]:
    """The partitions a --keep-going run could not score, first: how many, which, and why."""
    failed = report.get("failed_partitions") or []
    if not failed:
        return []
    rows = sum(row["stop"] - row["start"] for row in failed)
    first = failed[0]
    scored = count(report["dataset"]["n_images"])
    line = (f"INCOMPLETE: {count(len(failed))} partition(s), {count(rows)} images, could not be "
            f"scored; every figure below covers the other {scored} images. The first, "
            f"partition {first['index']} (rows {count(first['start'])}-{count(first['stop'])}): "
            f"{first['cause']}. Rerun with --resume to retry them.")
    return [line]


def ranked(report: dict[str, Any]) -> tuple[dict[str, float], str, str]:
    """Each model's accuracy, then the more accurate model and the other."""
    accuracy = {m: float(report["models"][m]["accuracy"]) for m in an.MODELS}
    best, other = sorted(an.MODELS, key=lambda m: -accuracy[m])
    return accuracy, best, other


def batch_ms(report: dict[str, Any], batch_size: int) -> dict[str, float | None]:
    """Each model's ms/image at `batch_size` in the throughput sweep (None: not measured)."""
    sweep = report.get("throughput") or []
    return {m: an.at_batch(an.throughput_series(sweep, m), batch_size) for m in an.MODELS}


def accuracy_lines(report: dict[str, Any]) -> list[str]:
    """Which model is more accurate, by how much overall and per digit; where each fails."""
    models = report["models"]
    accuracy, best, other = ranked(report)
    if accuracy[best] == accuracy[other]:
        headline = f"Both models are equally accurate: {pct(accuracy[best])}."
    else:
        diff = an.differences(models[other]["per_class_accuracy"],
                              models[best]["per_class_accuracy"])
        ahead = [d for d, x in enumerate(diff) if x is not None and x > 0]
        behind = [(d, x) for d, x in enumerate(diff) if x is not None and x < 0]
        headline = (f"The {L[best]} is the more accurate model: {pct(accuracy[best])} against "
                    f"the {L[other]}'s {pct(accuracy[other])} "
                    f"({points(accuracy[best] - accuracy[other])} points), ahead on "
                    f"{len(ahead)} of 10 digits")
        if ahead:
            most = max(ahead, key=lambda d: diff[d] or 0.0)
            headline += f", most on digit {most} ({points(diff[most])} points)"
        headline += "."
        if behind:
            digits = [f"{d} ({points(-x)})" for d, x in behind]
            listed = digits[0] if len(digits) == 1 else ", ".join(digits[:-1]) + " and " + digits[-1]
            headline += (f" The {L[other]} is ahead on digit{'s' if len(digits) > 1 else ''} "
                         f"{listed}.")
    return [headline, "; ".join(weakest(report, m) for m in an.MODELS) + "."]


def weakest(report: dict[str, Any], name: str) -> str:
    """Where one model fails most: its least accurate digit and its most common confusion."""
    per_class = report["models"][name]["per_class_accuracy"]
    known = [(value, d) for d, value in enumerate(per_class) if value is not None]
    text = f"the {L[name]} fails most on digit {min(known)[1]} ({pct(min(known)[0])} right)" \
        if known else f"the {L[name]} has no per-digit accuracy"
    pairs = an.confused_pairs(an.as_confusion(report, name), 1)
    if pairs:
        text += (f", most often reading a {pairs[0].true} as a {pairs[0].predicted} "
                 f"({count(pairs[0].count)} images)")
    return text[0].upper() + text[1:] if name == an.MODELS[0] else text


def agreement_lines(report: dict[str, Any]) -> list[str]:
    """Without labels: how often the models agree, and how sure the MLP is."""
    section = report.get("predictions") or {}
    agreement = (section.get("agreement") or {}).get("rate")
    line = "Without labels this run cannot say which model is right"
    if agreement is not None:
        line += f": the two agree on {pct(agreement)} of the images"
    thresholds = (section.get("confidence") or {}).get("thresholds") or []
    if thresholds:
        last = thresholds[-1]
        line += (f", and {pct(last.get('share'))} of the MLP's predictions have a top "
                 f"probability below {last['below']}")
    return [line + " (their disagreements are shown below)."]


def speed_line(report: dict[str, Any]) -> str:
    """Time per image at batch 1 and 1,000 on one worker, or the run's own rates."""
    at = [batch_ms(report, b) for b in BATCHES]
    ms = {m: [times[m] for times in at] for m in an.MODELS}
    if all(v is not None for m in an.MODELS for v in ms[m]):
        faster, slower = sorted(an.MODELS, key=lambda m: ms[m][1] or 0.0)
        ratio = (ms[slower][1] or 0.0) / (ms[faster][1] or 1.0)
        return ("Time per image on one worker: " + "; ".join(
            f"{L[m]} {sig(ms[m][0])} ms at batch 1 and {sig(ms[m][1])} ms at batch 1,000"
            for m in an.MODELS) + f". At batch 1,000 the {L[faster]} is {sig(ratio)}× faster.")
    rates = {m: report["models"][m].get("images_per_second") for m in an.MODELS}
    return ("In this run the " + " and the ".join(f"{L[m]} scored {sig(rates[m])} images/s"
                                                 for m in an.MODELS)
            + " of cluster time (time per image against batch size: --sweep).")


def footprint_line(report: dict[str, Any]) -> str:
    """Size on disk, training time and a worker's memory with both models loaded."""
    models = report["models"]
    line = (f"On disk the KNN takes {size(an.model_bytes(models['knn']))} (it keeps its "
            f"training digits) and the MLP {size(an.model_bytes(models['mlp']))}; training "
            f"took {sig(models['knn'].get('train_seconds'))} s and "
            f"{sig(models['mlp'].get('train_seconds'))} s")
    rss = an.worker_rss(report["cluster"])
    if rss:
        line += f"; a worker holding both uses {size(max(b for _, b in rss))}"
    return line + "."


def choice_line(report: dict[str, Any]) -> str | None:
    """What the numbers mean for choosing a model for batch scoring (None without a winner)."""
    models = report["models"]
    accuracy, best, other = ranked(report)
    if accuracy[best] == accuracy[other]:
        return None
    speed = batch_ms(report, BATCHES[-1])
    if speed["knn"] is None or speed["mlp"] is None:
        rates = {m: models[m].get("images_per_second") or 0.0 for m in an.MODELS}
        quicker = max(an.MODELS, key=lambda m: rates[m])
    else:
        quicker = min(an.MODELS, key=lambda m: speed[m] or 0.0)
    if quicker == best:
        smaller = an.model_bytes(models[best]) < an.model_bytes(models[other])
        return (f"For batch scoring the {L[best]} is the better choice on this data: more "
                f"accurate{', smaller' if smaller else ''} and faster.")
    return (f"A trade-off on this data: the {L[best]} is more accurate "
            f"({points(accuracy[best] - accuracy[other])} points), the {L[quicker]} faster.")
