"""Process management shared by the local stack's services: pid files, detached start, health probes, stop.
A pid file counts only while its process lives and its command line names the service's directory
(<state dir>/<service>/), so a recycled pid or another clone's stack is never touched.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

from telemetry.settings import Settings, SettingsError

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
POLL_SECONDS = 0.25


class StackError(RuntimeError):
    """A service could not be started or stopped; the message says which and why."""


@dataclass(frozen=True)
class Port:
    """A TCP port a service listens on, and the setting that moves it (for the port-taken message)."""

    number: int
    purpose: str
    env_var: str


@dataclass(frozen=True)
class Launch:
    """One long-running OS process of a service."""

    name: str  # names the pid file and the console log: <service dir>/<name>.pid, <name>.out
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the caller's environment


def local_port(url: str, env_var: str) -> int:
    """The port of a settings URL (or host:port), refusing hosts that are not this machine's loopback."""
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    if parsed.hostname not in LOCAL_HOSTS or parsed.port is None:
        raise SettingsError(f"{env_var}={url!r}: the local stack serves 127.0.0.1 only; use 127.0.0.1:PORT")
    return parsed.port


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (SO_REUSEADDR: sockets in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie still answers kill(pid, 0) until its parent reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # the state letter follows the parenthesised command name, which may itself contain spaces
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    """The process's command line; "" once it is gone."""
    # It also reads empty for a moment while the process execs (a script's `#!/usr/bin/env bash`, then its `exec
    # java`), so a starting service would look dead: read again for up to half a second.
    for _ in range(50):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return ""
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.01)
    return ""


def http_ok(url: str) -> bool:
    """True when GET url answers 200 within a couple of seconds."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


class Service(ABC):
    """A local service: its ports, how to prepare and launch it, how to tell it is healthy."""

    name: str
    processes: tuple[str, ...]  # the names launches() uses, known before anything is configured
    start_timeout: float = 60.0  # seconds from launch to healthy
    stop_grace: float = 20.0  # seconds between the stop signal and SIGKILL
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / self.name

    @abstractmethod
    def url(self) -> str:
        """Where clients reach it."""

    @abstractmethod
    def ports(self) -> list[Port]:
        """Every fixed port it listens on."""

    @abstractmethod
    def launches(self) -> list[Launch]:
        """The processes to start, in order; called after prepare()."""

    @abstractmethod
    def healthy(self) -> bool:
        """One quick probe; must not raise when the service is down."""

    def prepare(self) -> None:
        """Write configuration and do first-time initialisation; runs before every launch."""

    def provision(self) -> str | None:
        """Idempotent set-up once healthy (topics, buckets); returns a one-line summary."""
        return None

    def log_files(self) -> list[Path]:
        """Logs worth showing when the service fails to start, most useful last."""
        return [self.dir / f"{process}.out" for process in self.processes]

    # -- process bookkeeping ------------------------------------------------------------------------

    def pid_file(self, process: str) -> Path:
        return self.dir / f"{process}.pid"

    def recorded_pid(self, process: str) -> int | None:
        """The pid its pid file names, alive or not."""
        path = self.pid_file(process)
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text.isdigit() else None

    def pids(self) -> dict[str, int | None]:
        """Each process's pid, or None when it is not running (stale pid files are ignored)."""
        marker = f"{self.dir}{os.sep}"
        out: dict[str, int | None] = {}
        for process in self.processes:
            pid = self.recorded_pid(process)
            out[process] = pid if pid is not None and pid_alive(pid) and marker in cmdline(pid) else None
        return out

    def leftovers(self) -> dict[str, list[int]]:
        """Per process that is not running: what is left of its session (e.g. the Python workers a killed
        TaskManager started), which no signal to its dead leader reaches any more."""
        running = self.pids()
        out: dict[str, list[int]] = {}
        for process in self.processes:
            recorded = self.recorded_pid(process)
            if running[process] is None and recorded is not None:
                members = session_members(recorded)
                if members:
                    out[process] = members
        return out

    def spawn(self, launch: Launch) -> int:
        """Start one process detached (own session, output to a file), so the caller may exit; returns its pid."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{launch.name}.out", "ab") as out:
            proc = subprocess.Popen(
                launch.argv,
                cwd=self.dir,
                env={**os.environ, **launch.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file(launch.name).write_text(f"{proc.pid}\n")
        return proc.pid

    def check_start(self, started: float) -> bool:
        """One probe of a starting service: True once healthy; StackError, with the log tails, when one of its
        processes has exited or start_timeout has passed since `started` (a time.monotonic())."""
        if self.healthy():
            return True
        dead = [process for process, pid in self.pids().items() if pid is None]
        if dead:
            raise StackError(self.failure(f"({', '.join(dead)}) exited while starting"))
        if time.monotonic() - started > self.start_timeout:
            raise StackError(self.failure(f"is not healthy {self.start_timeout:.0f} s after its start"))
        return False

    def failure(self, what: str) -> str:
        tails = "\n".join(f"--- {path} (last lines) ---\n{tail(path)}" for path in self.log_files())
        return f"{self.name} {what}; its logs are under {self.dir}\n{tails}"

    def taken_ports(self) -> list[Port]:
        return [port for port in self.ports() if not port_free(port.number)]

    def signal_all(self, sig: signal.Signals, processes: tuple[str, ...] | None = None) -> list[int]:
        """Send sig to each running process's group (its children, e.g. Python workers, go too), and to what is
        left of the session of each one that died. processes: only these (default: all)."""
        sent = []
        for process, pid in self.pids().items():
            if pid is not None and (processes is None or process in processes) and send(pid, sig):
                sent.append(pid)
        for process, members in self.leftovers().items():
            if processes is None or process in processes:
                sent += [pid for pid in members if send(pid, sig, group=False)]
        return sent

    def clear_pid_files(self, processes: tuple[str, ...] | None = None) -> None:
        for process in processes or self.processes:
            self.pid_file(process).unlink(missing_ok=True)


def session_members(sid: int) -> list[int]:
    """Live processes of session sid. A spawned service process leads a session of its own (start_new_session),
    and Linux hands out no pid that still names a live session, so these are its descendants, even after it died."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def send(pid: int, sig: signal.Signals, group: bool = True) -> bool:
    """Signal the process group a spawned process leads (start_new_session), else the process; False if gone."""
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop(services: list[Service], processes: tuple[str, ...] | None = None) -> dict[str, list[int]]:
    """Send each service's stop signal (SIGTERM unless it says otherwise) to its processes (only `processes` when
    given), with what is left of the sessions of those that died; SIGKILL what is left after the grace period.

    Returns the pids stopped per service name; services that were not running map to [].
    """
    stopped = {service.name: service.signal_all(service.stop_signal, processes) for service in services}
    deadline = time.monotonic() + max((s.stop_grace for s in services), default=0.0)
    pending = [pid for pids in stopped.values() for pid in pids]
    while pending and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        pending = [pid for pid in pending if pid_alive(pid)]
    for pid in pending:
        send(pid, signal.SIGKILL)
    for pid in pending:  # SIGKILL cannot be ignored; wait for the kernel to tear the process down
        while pid_alive(pid):
            time.sleep(POLL_SECONDS)
    for service in services:
        service.clear_pid_files(processes)
    return stopped
