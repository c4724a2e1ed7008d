"""A test bed of hosts on this machine: each host is a Linux network namespace with one veth into
the bridge of the bed's own switch namespace (10.77.0.0/24, no route anywhere else), running real
`dask scheduler`, `dask worker` or job processes. A host can be lost (every process killed), cut
off (its link down) and reconnected; new hosts can join at any time.

Namespaces are named `md<random>-<host>`, so parallel runs never share one; interfaces live only
inside them. `host_bed` removes everything at the end, also when the test fails.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBNET = "10.77.0"  # every bed its own switch: the same subnet never meets another bed's
SCHEDULER_PORT = 8786
WORKER_PORT = 9000  # where a worker listens when it advertises another address
START_SECONDS = 120.0  # for a process to come up on a loaded machine


@dataclass
class Host:
    """One namespace on the bed's switch: `address` its IPv4 address, `port` the switch end of
    its link, `processes` what the test started there."""

    name: str
    namespace: str
    address: str
    port: str
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    log: Path | None = None  # of its server, which is up once the log holds `ready`
    ready: str = ""


def ip(*args: str) -> None:
    """Run `ip ARGS`; CalledProcessError with its message when it fails."""
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def namespace_pids(namespace: str) -> list[int]:
    """Ids of the processes in `namespace` (none when it is gone)."""
    done = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                          timeout=30, check=False)
    return [int(pid) for pid in done.stdout.split()]


def wait_for_line(log: Path, text: str, process: subprocess.Popen[str],
                  seconds: float = START_SECONDS) -> None:
    """Poll `log` until it holds `text`; AssertionError when `process` exits or time runs out."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if log.is_file() and text in log.read_text(errors="replace"):
            return
        assert process.poll() is None, f"{log.name} exited: {log.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {log} after {seconds:g} s: "
                         f"{log.read_text(errors='replace')[-3000:]}")


class Bed:
    """Hosts on one switch; `root` holds their logs and worker folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tag = f"md{secrets.token_hex(3)}"
        self.switch = f"{self.tag}-switch"
        self.hosts: dict[str, Host] = {}
        self.namespaces: list[str] = []  # made so far, to remove at the end
        self.next_address = 10

    def add_namespace(self, namespace: str) -> None:
        """A new network namespace, recorded for `close`."""
        ip("netns", "add", namespace)
        self.namespaces.append(namespace)

    def create_switch(self) -> None:
        """The switch namespace and its bridge."""
        self.add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, name: str) -> Host:
        """A new namespace `name` linked to the switch, with the next free address."""
        assert name not in self.hosts and len(name) <= 12, name
        host = Host(name, f"{self.tag}-{name}", f"{SUBNET}.{self.next_address}", f"p-{name}")
        self.next_address += 1
        self.add_namespace(host.namespace)
        self.hosts[name] = host
        ip("link", "add", "eth0", "netns", host.namespace, "type", "veth",
           "peer", "name", host.port, "netns", self.switch)
        ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        for link in ("lo", "eth0"):
            ip("-n", host.namespace, "link", "set", link, "up")
        return host

    def popen(self, host: Host, command: list[str], log: Path | None = None
              ) -> subprocess.Popen[str]:
        """`command` started inside `host` (output to `log`, or pipes when None)."""
        # Dask's scratch space (the scheduler's included) in the bed's folder, not /tmp's.
        env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_TEMPORARY_DIRECTORY": str(self.root)}
        out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 - the child owns it
        try:
            process = subprocess.Popen(
                ["ip", "netns", "exec", host.namespace, *command], cwd=REPO, env=env, text=True,
                stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE)
        finally:
            if log:
                out.close()
        host.processes.append(process)
        return process

    def serve(self, host: Host, command: list[str], ready: str) -> None:
        """`host` runs the server `command`, up once its log shows `ready`."""
        host.log, host.ready = self.root / f"{host.name}.log", ready
        self.popen(host, command, host.log)

    def wait_ready(self, *names: str) -> None:
        """Return once the server of each host in `names` is up."""
        for name in names:
            host = self.hosts[name]
            assert host.log is not None, f"{name} runs no server"
            wait_for_line(host.log, host.ready, host.processes[0])

    def start_scheduler(self, name: str, wait: bool = True) -> str:
        """A new host `name` running `dask scheduler`; its address (listening when `wait`)."""
        host = self.add_host(name)
        self.serve(host, [sys.executable, "-m", "dask", "scheduler", "--host", host.address,
                          "--port", str(SCHEDULER_PORT), "--no-dashboard"], "Scheduler at:")
        if wait:
            self.wait_ready(name)
        return f"tcp://{host.address}:{SCHEDULER_PORT}"

    def start_worker(self, name: str, scheduler: str, advertise: str | None = None,
                     wait: bool = True) -> Host:
        """A new host `name` running one single-threaded `dask worker` (with its nanny) of
        `scheduler` (registered when `wait`); it tells the scheduler to reach it at
        `advertise` (an IPv4 address) when given, instead of its own address."""
        host = self.add_host(name)
        where = (["--host", host.address] if advertise is None else
                 ["--listen-address", f"tcp://{host.address}:{WORKER_PORT}",
                  "--contact-address", f"tcp://{advertise}:{WORKER_PORT}"])
        self.serve(host, [
            sys.executable, "-m", "dask", "worker", scheduler, *where, "--name", name,
            "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
            "--local-directory", str(self.root / name)], "Registered to:")
        if wait:
            self.wait_ready(name)
        return host

    def start_job(self, name: str, *args: str) -> subprocess.Popen[str]:
        """`python -m jobs.score ARGS` on a new host `name`, its output in pipes."""
        return self.popen(self.add_host(name), [sys.executable, "-m", "jobs.score", *args])

    def lose(self, name: str) -> None:
        """Host `name` loses every process at once (SIGKILL), as a machine that dies."""
        host = self.hosts[name]
        for pid in namespace_pids(host.namespace):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in host.processes:
            process.wait(timeout=30)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()

    def cut(self, name: str) -> None:
        """Host `name`'s link goes down: its packets are dropped silently, both ways."""
        ip("-n", self.switch, "link", "set", self.hosts[name].port, "down")

    def restore(self, name: str) -> None:
        """Host `name`'s link comes back up."""
        ip("-n", self.switch, "link", "set", self.hosts[name].port, "up")

    def close(self) -> None:
        """Every process of every host killed, every namespace (and so every link) removed."""
        for name in self.hosts:
            self.lose(name)
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30,
                           check=False)


@contextmanager
def host_bed(root: Path) -> Iterator[Bed]:
    """A new bed with its switch; skips the test where network namespaces cannot be made."""
    bed = Bed(root)
    try:
        try:
            bed.create_switch()
        except (OSError, subprocess.CalledProcessError) as exc:
            reason = getattr(exc, "stderr", "") or exc
            pytest.skip(f"network namespaces cannot be made here (needs root and iproute2): "
                        f"{str(reason).strip()}")
        yield bed
    finally:
        bed.close()
