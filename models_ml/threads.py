"""CPU threads for ML jobs that share a machine.

The embedded runtime's ML worker runs two jobs at once (a retraining run's
fine-tune and its control train side by side). On a CPU each job's torch
then takes its share of ``settings.ML_CPU_THREADS``: all of them while it
runs alone, half while two run on this host. Oversubscribed OpenMP threads
spin at every barrier and can run several times slower than one thread per
core (docs/benchmarks.md), so the share is re-read every few seconds while a
job runs: when its sibling finishes, the survivor takes the freed cores.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from django.conf import settings
from django.utils import timezone

from .models import Job, JobKind, JobStatus

# Jobs that run on the default queue and never load torch.
NON_ML_KINDS = (JobKind.IMPORT, JobKind.EXPORT)


def default_cpu_threads() -> int:
    """``OMP_NUM_THREADS`` when set, else the cores this process may use."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def thread_share(budget: int, running: int) -> int:
    """Each of ``running`` jobs' share of ``budget`` threads (at least one)."""
    return max(1, budget // max(1, running))


def ml_jobs_running_here() -> int:
    """ML jobs running on this host (this one included); a dead worker's job,
    silent for ``JOB_STALE_AFTER``, is not counted."""
    return (
        Job.objects.filter(
            status=JobStatus.RUNNING,
            worker=socket.gethostname()[:200],
            heartbeat_at__gte=timezone.now() - settings.JOB_STALE_AFTER,
        )
        .exclude(kind__in=NON_ML_KINDS)
        .count()
    )


class ThreadShare:
    """Called on every progress report of a job; at most every ``every``
    seconds it sets torch's thread count to the job's share. Does nothing
    until the job's body has imported torch, and nothing for jobs that never
    do."""

    def __init__(self, *, budget: int | None = None, every: float = 5.0) -> None:
        self.budget = budget or settings.ML_CPU_THREADS or default_cpu_threads()
        self.every = every
        self.checked = float("-inf")
        self.threads: int | None = None

    def __call__(self) -> None:
        torch = sys.modules.get("torch")
        now = time.monotonic()
        if torch is None or now - self.checked < self.every:
            return
        self.checked = now
        threads = thread_share(self.budget, ml_jobs_running_here())
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
