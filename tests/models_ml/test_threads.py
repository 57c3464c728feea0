"""ML jobs sharing a machine's cores (models_ml/threads.py)."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
import torch
from django.utils import timezone

from annotations.management.commands import run_embedded
from models_ml import threads
from models_ml.models import Job, JobKind, JobStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def running(kind: str, *, worker: str | None = None, silent_for: int = 0) -> Job:
    return Job.objects.create(
        kind=kind,
        status=JobStatus.RUNNING,
        worker=worker or socket.gethostname(),
        heartbeat_at=timezone.now() - timedelta(seconds=silent_for),
    )


@pytest.mark.parametrize(
    ("budget", "jobs", "share"),
    [(2, 1, 2), (2, 2, 1), (2, 3, 1), (8, 3, 2), (1, 2, 1), (4, 0, 4)],
)
def test_each_running_job_takes_its_share_of_the_threads_and_never_none(
    budget, jobs, share
):
    assert threads.thread_share(budget, jobs) == share


def test_only_live_ml_jobs_on_this_host_count():
    running(JobKind.FINETUNE)
    running(JobKind.GENERATE_ROUND)
    running(JobKind.FINETUNE, worker="gpu-box-2")  # another machine's cores
    running(JobKind.IMPORT)  # the default queue: no torch
    running(JobKind.FINETUNE, silent_for=3600)  # its worker died
    Job.objects.create(kind=JobKind.FINETUNE, status=JobStatus.QUEUED)
    assert threads.ml_jobs_running_here() == 2


def test_a_job_gets_all_threads_alone_half_beside_another_and_all_again_after(
    torch_threads,
):
    running(JobKind.FINETUNE)
    share = threads.ThreadShare(budget=2, every=0)
    share()
    assert torch.get_num_threads() == 2
    sibling = running(JobKind.FINETUNE)
    share()
    assert torch.get_num_threads() == 1
    Job.objects.filter(pk=sibling.pk).update(status=JobStatus.SUCCEEDED)
    share()
    assert torch.get_num_threads() == 2


def test_the_share_is_read_at_most_every_few_seconds(torch_threads):
    running(JobKind.FINETUNE)
    share = threads.ThreadShare(budget=2, every=3600)
    share()
    assert torch.get_num_threads() == 2
    running(JobKind.FINETUNE)
    share()  # within the interval: not read again
    assert torch.get_num_threads() == 2


def test_the_budget_is_omp_num_threads_when_set_else_the_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_cpu_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.default_cpu_threads() >= 1
    cores = threads.default_cpu_threads()
    for junk in ("lots", "0", "-2", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert threads.default_cpu_threads() == cores


def test_the_embedded_worker_runs_two_ml_jobs_on_two_cores_or_the_setting(
    settings, monkeypatch
):
    settings.ML_WORKER_CONCURRENCY = 0
    monkeypatch.setattr(run_embedded.os, "sched_getaffinity", lambda _: {0, 1})
    assert run_embedded.ml_concurrency() == 2
    monkeypatch.setattr(run_embedded.os, "sched_getaffinity", lambda _: {0})
    assert run_embedded.ml_concurrency() == 1
    settings.ML_WORKER_CONCURRENCY = 3
    assert run_embedded.ml_concurrency() == 3
