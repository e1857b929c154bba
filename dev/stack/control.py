"""up / down / status over the local stack's services, in dependency order (MinIO's credentials before Flink's
configuration), printing one line per service; the CLI in __main__ runs these, tests read status().
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from telemetry.settings import Settings, SettingsError
from dev.stack.clickhouse import ClickHouse
from dev.stack.flink import Flink
from dev.stack.kafka import Kafka
from dev.stack.minio import MinIO
from dev.stack.postgres import Postgres
from dev.stack.process import POLL_SECONDS, Service, StackError, stop
from dev.stack.prometheus import Prometheus

SERVICES: tuple[type[Service], ...] = (Kafka, ClickHouse, Postgres, MinIO, Prometheus, Flink)
NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)

Print = Callable[[str], None]


@dataclass(frozen=True)
class Status:
    name: str
    pids: dict[str, int | None]
    url: str
    healthy: bool

    @property
    def running(self) -> bool:
        return all(pid is not None for pid in self.pids.values())


def select(settings: Settings, names: list[str] | None = None) -> list[Service]:
    """The named services (all when none are named) in start order."""
    unknown = sorted(set(names or ()) - set(NAMES))
    if unknown:
        raise StackError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    return [cls(settings) for cls in SERVICES if not names or cls.name in names]


def format_pids(pids: dict[str, int | None]) -> str:
    """The pids for display: "1234", or "jobmanager 1234, taskmanager 1240" for Flink; stopped ones left out."""
    return ", ".join(f"{name} {pid}" if len(pids) > 1 else str(pid) for name, pid in pids.items() if pid is not None)


def check_ports(service: Service) -> None:
    """Raise naming each fixed port of the service that another process holds, and the setting that moves it."""
    taken = service.taken_ports()
    if not taken:
        return
    lines = [
        f"port {p.number} on 127.0.0.1 ({p.purpose}) is in use by another process; stop it "
        f"(`ss -ltnp 'sport = :{p.number}'` shows which) or choose another port with {p.env_var}"
        for p in taken
    ]
    raise StackError(f"{service.name}: " + "\n  ".join(lines))


@contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
    """Hold the state directory's lock: a second `up` or `down` on the same stack waits instead of racing."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / ".stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(settings: Settings, names: list[str] | None = None, echo: Print = print) -> bool:
    """Start what is not running, wait until everything named is healthy, then provision (topics, bucket).

    A running, healthy service is left alone. Returns True when every named service ends up healthy.
    """
    failed: set[str] = set()
    # (service, time.monotonic() of its start or of this wait, whether this call started it)
    to_wait: list[tuple[Service, float, bool]] = []
    for service in select(settings, names):
        try:
            pids = service.pids()
            if all(pid is not None for pid in pids.values()):
                if service.healthy():
                    echo(f"{service.name:<11} already running, left alone (pid {format_pids(pids)})  {service.url()}")
                else:
                    to_wait.append((service, time.monotonic(), False))  # an earlier `up` may still be starting it
                continue
            if any(pid is not None for pid in pids.values()):
                # Only what died: a restarted JobManager would take the running jobs with it.
                dead = tuple(name for name, pid in pids.items() if pid is None)
                echo(f"{service.name:<11} partly running ({format_pids(pids)}): restarting {', '.join(dead)}")
                stop([service], dead)  # what is left of the dead ones' sessions, e.g. their Python workers
                started = time.monotonic()
                for launch in service.launches():
                    if launch.name in dead:
                        service.spawn(launch)
                to_wait.append((service, started, True))
                continue
            stop([service])  # what is left of the sessions of a service that died whole
            check_ports(service)
            started = time.monotonic()
            service.prepare()
            for launch in service.launches():
                service.spawn(launch)
            to_wait.append((service, started, True))
        except (StackError, SettingsError) as exc:
            failed.add(service.name)
            echo(f"{service.name:<11} FAILED: {exc}")
    # probe the starting services in turn, so each one's start time is its own
    pending = list(to_wait)
    while pending:
        for entry in list(pending):
            service, started, fresh = entry
            try:
                if not service.check_start(started):
                    continue
                what = f"started in {time.monotonic() - started:.1f} s" if fresh else "already running, now healthy"
                echo(f"{service.name:<11} {what} (pid {format_pids(service.pids())})  {service.url()}")
            except StackError as exc:
                failed.add(service.name)
                echo(f"{service.name:<11} FAILED: {exc}")
                # what is left of it would hold its ports and confuse the next `up`
                stopped = stop([service])[service.name]
                if stopped:
                    echo(f"{service.name:<11} stopped what was left of it (pid {', '.join(map(str, stopped))})")
            pending.remove(entry)
        if pending:
            time.sleep(POLL_SECONDS)
    for service in select(settings, names):
        if service.name in failed:
            continue
        try:
            summary = service.provision()
        except Exception as exc:  # noqa: BLE001 - whatever the client raises is reported with the service's name
            failed.add(service.name)
            echo(f"{service.name:<11} FAILED to provision: {exc}")
        else:
            if summary:
                echo(f"{service.name:<11} {summary}")
    if not failed and not any(fresh for _, _, fresh in to_wait):
        echo("nothing to start: every service was already running and healthy")
    return not failed


def down(settings: Settings, names: list[str] | None = None, echo: Print = print) -> None:
    """Stop the named services (all when none are named): each one's stop signal, then SIGKILL after its grace period."""
    services = list(reversed(select(settings, names)))
    for name, pids in stop(services).items():
        echo(f"{name:<11} " + (f"stopped (pid {', '.join(map(str, pids))})" if pids else "not running"))


def status(settings: Settings, names: list[str] | None = None) -> list[Status]:
    return [Status(s.name, s.pids(), s.url(), s.healthy()) for s in select(settings, names)]
