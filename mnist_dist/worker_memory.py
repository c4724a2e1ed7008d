"""Resident memory of this process: now, its peak, and a sampler thread. Plain functions that
run inside a worker (`client.run(rss)`); nothing here knows about Dask.

Two ways to a peak: the kernel's high-water mark (`reset_peak_rss` / `peak_rss`, exact, Linux)
and the sampler (`start_rss_sampler` / `stop_rss_sampler`, psutil every `interval` seconds),
which also gives the median, i.e. whether memory trends upward during a run.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import threading
from pathlib import Path
from typing import Any

import psutil

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")

# The sampler of this process; one at a time (a new start stops the previous one).
_sampler: dict[str, Any] = {}


def rss() -> int:
    """Resident bytes of this process now."""
    return int(psutil.Process().memory_info().rss)


def reset_peak_rss() -> bool:
    """Reset this process's peak resident size (Linux: VmHWM); False where unsupported."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """Peak resident bytes of this process since start or the last `reset_peak_rss`."""
    with contextlib.suppress(OSError):
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def start_rss_sampler(interval: float) -> int:
    """Start sampling this process's RSS every `interval` seconds; returns the current RSS."""
    stop_rss_sampler()
    process = psutil.Process()
    samples = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            samples.append(process.memory_info().rss)

    thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    thread.start()
    _sampler.update(stop=stop, thread=thread, samples=samples, process=process)
    return samples[0]


def stop_rss_sampler() -> dict[str, int]:
    """Stop the sampler; the peak and median RSS it saw in bytes (empty when none ran).

    The median shows whether memory trends upward: a longer run's peak, a maximum over more
    samples, can be higher while the median stays put.
    """
    if not _sampler:
        return {}
    _sampler["stop"].set()
    _sampler["thread"].join()
    samples = [*_sampler["samples"], _sampler["process"].memory_info().rss]
    _sampler.clear()
    return {"peak": int(max(samples)), "median": int(statistics.median(samples))}
