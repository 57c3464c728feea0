"""Start the web server and Celery workers together (the embedded default)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Run the web server plus two Celery workers (default queue with the "
        "reaper schedule, and the ML queue one job at a time) until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args: Any, **o: Any) -> None:
        celery = [
            sys.executable,
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
        procs = [
            subprocess.Popen(
                [
                    *celery,
                    "-Q",
                    "default",
                    "-n",
                    "default@%h",
                    "-B",
                    "--schedule",
                    beat_db,
                ]
            ),
            subprocess.Popen([*celery, "-Q", "ml", "-n", "ml@%h"]),
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "medrlhf.wsgi:application",
                    "--bind",
                    f"{o['host']}:{o['port']}",
                    "--workers",
                    "2",
                    "--threads",
                    "4",
                    "--access-logfile",
                    "-",
                ],
                env={**os.environ},
            ),
        ]
        self.stdout.write(
            f"medrlhf is running at http://{o['host']}:{o['port']}/ (Ctrl-C stops it)"
        )
        try:
            while all(p.poll() is None for p in procs):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        failed = [
            p.args for p in procs if p.returncode not in (0, -signal.SIGTERM, None)
        ]
        if failed:
            sys.exit(1)
