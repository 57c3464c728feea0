"""Start a real Celery worker process against the test database and broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    host, port = s["HOST"] or "127.0.0.1", s["PORT"] or 5432
    return f"postgres://{s['USER']}@{host}:{port}/{s['NAME']}"


@contextmanager
def celery_worker(
    *,
    queues: str = "default,ml",
    log: Path | None = None,
    env: dict[str, str] | None = None,
    beat_schedule: Path | None = None,
    concurrency: int = 1,
) -> Iterator[subprocess.Popen]:
    """A worker that sees the same database, media folder and broker as the test.

    ``env`` adds variables (a shorter job lease, say); with ``beat_schedule``
    the worker also runs Celery beat (the reaper) keeping its state there;
    ``concurrency`` jobs run at once (the embedded runtime's ML worker: 2).
    """
    worker_env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MODELS_DIR": str(settings.MODELS_DIR),
        "IMPORT_ROOTS": ",".join(str(p) for p in settings.IMPORT_ROOTS),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    beat = ["-B", "--schedule", str(beat_schedule)] if beat_schedule else []
    out = open(log, "a") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "medrlhf",
            "worker",
            "-Q",
            queues,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
            "-n",
            f"test{os.getpid()}-{time.monotonic_ns()}@%h",
            *beat,
        ],
        cwd=ROOT,
        env=worker_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log:
            out.close()


def kill_worker(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and the pool process running its task, as a machine
    that loses power would: nothing gets to record or acknowledge anything."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_for(
    predicate, *, timeout: float, interval: float = 0.5, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
