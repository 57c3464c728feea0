"""What the learning loop does when the rating platform announces something."""

from __future__ import annotations

from typing import Any

from annotations.models import Round
from annotations.users import User

from .gate import comparison_decide
from .models import Comparison, Job


def score_round_on_create(
    sender: Any, round: Round, created_by: User | None, **kwargs: Any
) -> None:
    """A round created with a reward model has its images scored
    (``round_score_start``); an error refuses the round's creation."""
    if round.reward_model_version_id is not None:
        from .services.round_scoring import round_score_start

        round_score_start(round=round, created_by=created_by)


def queue_requested_job(sender: Any, job: Job, **kwargs: Any) -> None:
    """A job the rating platform created (a dataset import) is queued."""
    from .services import jobs

    jobs.job_enqueue(job=job)


def decide_comparison_on_close(sender: Any, round: Round, **kwargs: Any) -> None:
    """A comparison round that closes records its verdict (``gate.py``)."""
    comparison = Comparison.objects.filter(round=round, decided_at=None).first()
    if comparison is not None:
        comparison_decide(comparison=comparison)


def rescore_round_when_due(sender: Any, round_id: int, **kwargs: Any) -> None:
    """A first rating of a most-informative-first round has committed: start
    its re-scoring if enough ratings have come in (``round_rescore_maybe``)."""
    from .services.round_scoring import round_rescore_maybe

    round_rescore_maybe(round_id=round_id)


def stop_the_rest_of_a_run(sender: Any, job: Job, **kwargs: Any) -> None:
    """A retraining run's step that stopped takes what depended on it along
    (``chains.chain_after_stop``)."""
    from .services.chains import chain_after_stop

    chain_after_stop(job=job)
