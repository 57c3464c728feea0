"""Start the web server and Celery workers together (the embedded default)."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

STOP_TIMEOUT_S = 20


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server to this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def ml_concurrency() -> int:
    """How many ML jobs the embedded worker runs at once: the setting, else
    two where there are two cores or more (a retraining run's fine-tune and
    its control side by side), else one."""
    if settings.ML_WORKER_CONCURRENCY > 0:
        return settings.ML_WORKER_CONCURRENCY
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each child's whole process group (Celery pool and beat children
    included), then SIGKILL whatever is still there after a grace period."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


class Command(BaseCommand):
    help = (
        "Run the web server plus two Celery workers (default queue with the "
        "reaper schedule, and the ML queue one job at a time) until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args: Any, **o: Any) -> None:
        if settings.DEBUG and not is_loopback(o["host"]):
            raise CommandError(
                f"--host {o['host']}: DEBUG is on (the development default), so "
                "Django's debug pages (URL list, tracebacks, settings) would be "
                "shown to anyone who reaches the server. Serve beyond this "
                "machine with MEDRLHF_ENV=production (see README, "
                "'Configuration'), or keep --host 127.0.0.1."
            )
        python = sys.executable
        worker = [
            python,
            "-m",
            "celery",
            "-A",
            "medrlhf",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
        ]
        beat_db = str(settings.VAR_DIR / "celerybeat-schedule")
        commands = [
            [*worker, "-Q", "default", "-n", "default@%h", "-B", "--schedule", beat_db],
            # A retraining run's fine-tune and its control train side by
            # side; each job's torch takes its share of the cores
            # (models_ml/threads.py).
            [*worker[:-1], str(ml_concurrency()), "-Q", "ml", "-n", "ml@%h"],
            [
                python,
                "-m",
                "gunicorn",
                "medrlhf.wsgi:application",
                "--bind",
                f"{o['host']}:{o['port']}",
                "--workers",
                "2",
                "--threads",
                "4",
                # Keep a physician's connection across the seconds they look
                # at an image (gunicorn's default drops it after 2 s).
                "--keep-alive",
                "30",
                "--access-logfile",
                "-",
            ],
        ]
        # A SIGTERM (from a service manager or kill) stops the children too.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        procs: list[subprocess.Popen] = []
        try:
            for argv in commands:
                # Each child leads its own process group so that stopping it
                # also stops the processes it forks.
                procs.append(subprocess.Popen(argv, start_new_session=True))  # noqa: S603
            self.stdout.write(
                f"medrlhf is running at http://{o['host']}:{o['port']}/ "
                "(Ctrl-C stops it)"
            )
            while all(p.poll() is None for p in procs):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            _stop(procs)
        if any(
            p.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL) for p in procs
        ):
            sys.exit(1)
