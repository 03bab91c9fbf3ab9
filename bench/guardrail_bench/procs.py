"""Processes under test: start, wait for the port, CPU time and peak RSS from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class BenchError(RuntimeError):
    """A setup or measurement failure, with what to do about it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """The process and every live descendant (nginx's workers, haproxy's threads are
    one process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


class Proc:
    """A started server whose CPU and memory are read from /proc."""

    def __init__(self, name: str, cmd: list[str], port: int, log_dir: Path,
                 env: dict[str, str] | None = None, timeout: float = 60.0):
        self.name = name
        self.port = port
        self.admin: int | None = None  # its admin (metrics) port, where it has one
        self.log = log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        self.popen = subprocess.Popen(
            cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=full_env,
            start_new_session=True)
        self._wait_port(timeout)

    def _wait_port(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.popen.returncode} before listening on "
                    f"port {self.port}:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BenchError(f"{self.name} never listened on port {self.port} within "
                         f"{timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pids(self) -> list[int]:
        return descendants(self.popen.pid)

    def cpu_seconds(self) -> float:
        """On-CPU time of every thread of the process tree so far, from schedstat
        (nanoseconds; /proc/<pid>/stat counts 10 ms ticks, too coarse for a few
        seconds at 1000 requests/s)."""
        total = 0
        for pid in self.pids():
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
        return total / 1e9

    def reset_peak_rss(self) -> None:
        """Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each run's peak is
        its own."""
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass

    def peak_rss_kib(self) -> int:
        """Peak resident memory of the process tree (sum of VmHWM)."""
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


class Processes:
    """Every process a scenario started, stopped in reverse order on exit."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, cmd: list[str], port: int, **kwargs) -> Proc:
        proc = Proc(name, cmd, port, self.log_dir, **kwargs)
        self.started.append(proc)
        return proc

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.started):
            proc.stop()
