"""Abandoning a round whose generation failed (or that nobody rated yet), and
queueing its generation again."""

from __future__ import annotations

import pytest

from annotations.errors import DomainError
from annotations.models import Assignment, AuditEvent, Image, Rating, RoundStatus
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit
from annotations.services.rounds import round_generated_fill
from models_ml.models import Job, JobKind, JobStatus
from models_ml.services.rounds import (
    RoundConflict,
    round_abandon,
    round_generation_retry,
)
from tests.models_ml import test_ml_jobs

from .review_data import diffusion, generating_round, scored

pytestmark = pytest.mark.django_db
sent = test_ml_jobs.sent


@pytest.fixture
def version():
    return diffusion()


def test_a_round_whose_generation_failed_is_closed_with_its_reason(version, admin_user):
    rnd, job = generating_round(version=version, admin=admin_user)
    stored = scored(version, None, job_id=job.pk, round=rnd)
    rnd = round_abandon(round=rnd, reason="GPU ran out of memory", actor=admin_user)
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.CLOSED and rnd.closed_at is not None
    abandoned = rnd.settings["abandoned"]
    assert abandoned["reason"] == "GPU ran out of memory"
    assert abandoned["by"] == admin_user.get_username()
    assert (abandoned["status_before"], abandoned["job_id"]) == ("generating", job.pk)
    assert abandoned["job_status"] == "failed"
    # Left for inspection: the job as it ended, and the images it stored.
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error == "CUDA out of memory"
    assert Image.objects.filter(pk=stored.pk).exists()
    event = AuditEvent.objects.get(action="round_abandon")
    assert event.object_id == str(rnd.pk) and event.actor == admin_user
    assert event.detail["reason"] == "GPU ran out of memory"


@pytest.mark.parametrize(
    ("job_status", "after"),
    [(JobStatus.RUNNING, JobStatus.RUNNING), (JobStatus.QUEUED, JobStatus.CANCELLED)],
)
def test_abandoning_a_round_still_generating_stops_its_job(
    version, admin_user, job_status, after
):
    rnd, job = generating_round(
        version=version, admin=admin_user, job_status=job_status
    )
    round_abandon(round=rnd, reason="wrong prompts", actor=admin_user)
    job.refresh_from_db()
    assert job.cancel_requested and job.status == after


def test_a_job_finishing_after_the_round_was_abandoned_does_not_reopen_it(
    version, admin_user
):
    rnd, job = generating_round(
        version=version, admin=admin_user, job_status=JobStatus.RUNNING
    )
    round_abandon(round=rnd, reason="wrong prompts", actor=admin_user)
    late = [scored(version, None, job_id=job.pk, round=rnd)]
    after = round_generated_fill(
        round=rnd, images=late, control_pool=[], actor=admin_user, open_now=True
    )
    assert after.status == RoundStatus.CLOSED and not after.items.exists()


def test_a_draft_round_and_an_open_round_nobody_rated_may_be_abandoned(
    make_round, admin_user, physician
):
    draft = make_round(2, open_now=False)
    assert round_abandon(round=draft, reason="duplicate", actor=admin_user).status == (
        RoundStatus.CLOSED
    )
    unrated = make_round(2)
    served = assignment_next(round=unrated, rater=physician)
    round_abandon(round=unrated, reason="wrong raters", actor=admin_user)
    served.refresh_from_db()
    assert served.expired_at is not None
    assert not Assignment.objects.filter(round=unrated, expired_at=None).exists()


def test_a_rated_round_is_refused_with_a_message_saying_to_close_it(
    make_round, admin_user, physician
):
    rnd = make_round(2)
    a = assignment_next(round=rnd, rater=physician)
    rating_submit(round=rnd, rater=physician, image=a.round_image.image, score=3)
    with pytest.raises(RoundConflict, match="has 1 rating; .* close it instead"):
        round_abandon(round=rnd, reason="changed my mind", actor=admin_user)
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.RATING and "abandoned" not in rnd.settings
    assert Rating.objects.filter(round=rnd).count() == 1
    assert not AuditEvent.objects.filter(action="round_abandon").exists()


def test_abandoning_needs_a_reason(version, admin_user):
    rnd, _ = generating_round(version=version, admin=admin_user)
    with pytest.raises(DomainError, match="give a reason"):
        round_abandon(round=rnd, reason="  ", actor=admin_user)
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.GENERATING


def test_abandoning_twice_changes_nothing_and_a_closed_round_is_refused(
    version, admin_user, make_round
):
    rnd, _ = generating_round(version=version, admin=admin_user)
    first = round_abandon(round=rnd, reason="first", actor=admin_user)
    again = round_abandon(round=rnd, reason="second", actor=admin_user)
    assert (
        again.settings["abandoned"]["reason"]
        == "first"
        == (first.settings["abandoned"]["reason"])
    )
    assert AuditEvent.objects.filter(action="round_abandon").count() == 1
    closed = make_round(1, name="done")
    closed.status = RoundStatus.CLOSED
    closed.save()
    with pytest.raises(RoundConflict, match="already closed"):
        round_abandon(round=closed, reason="x", actor=admin_user)


@pytest.mark.parametrize("job_status", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_retry_queues_the_same_generation_again_and_the_round_follows_the_new_job(
    version, admin_user, sent, django_capture_on_commit_callbacks, job_status
):
    rnd, failed = generating_round(
        version=version, admin=admin_user, job_status=job_status
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = round_generation_retry(round=rnd, actor=admin_user)
    assert job.kind == JobKind.GENERATE_ROUND and job.status == JobStatus.QUEUED
    expected = {k: v for k, v in failed.params.items() if k != "chain"}
    assert job.params == {**expected, "retry_of": failed.pk}
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.GENERATING
    assert rnd.settings["job_id"] == job.pk
    assert rnd.settings["previous_job_ids"] == [failed.pk]
    assert sent == [("models_ml.tasks.ml_generate_round", "ml")]
    event = AuditEvent.objects.get(action="round_generation_retry")
    assert event.detail == {"failed_job_id": failed.pk, "job_id": job.pk}


@pytest.mark.parametrize("job_status", [JobStatus.RUNNING, JobStatus.SUCCEEDED])
def test_retry_is_refused_while_the_job_runs_or_after_it_succeeded(
    version, admin_user, job_status
):
    rnd, _ = generating_round(version=version, admin=admin_user, job_status=job_status)
    with pytest.raises(RoundConflict, match=f"is {job_status}; only a failed"):
        round_generation_retry(round=rnd, actor=admin_user)
    assert Job.objects.count() == 1


def test_retry_is_refused_for_an_abandoned_round_and_one_not_generating(
    version, admin_user, make_round
):
    rnd, _ = generating_round(version=version, admin=admin_user)
    round_abandon(round=rnd, reason="gone", actor=admin_user)
    with pytest.raises(RoundConflict, match="was abandoned"):
        round_generation_retry(round=rnd, actor=admin_user)
    with pytest.raises(RoundConflict, match="not waiting for its images"):
        round_generation_retry(round=make_round(1), actor=admin_user)
