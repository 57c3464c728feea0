"""Logins and failed logins go to the audit log; and what the rating
platform announces for the learning loop to act on.

``annotations`` never calls the loop's code itself; it sends these signals,
and ``models_ml/apps.py`` connects the receivers:

- ``round_created``, inside the transaction that creates a round, with
  ``round`` and ``created_by``: a round created with a reward model gets its
  images scored (a receiver's error aborts the creation);
- ``round_closed``, inside the transaction that closes a round (not an
  abandoned one), with ``round``: a comparison round's promotion gate is
  decided;
- ``job_requested``, inside the transaction that created a ``Job`` row for
  work of this app (a dataset import), with ``job``: the job is queued once
  the transaction commits;
- ``first_rating_committed`` (below).
"""

from typing import Any

from django.contrib.auth.signals import (
    user_logged_in,
    user_logged_out,
    user_login_failed,
)
from django.dispatch import Signal, receiver
from django.http import HttpRequest
from rest_framework.request import Request

from .audit import audit_record
from .users import User

round_created = Signal()
round_closed = Signal()
job_requested = Signal()
# Sent after the transaction that saved a physician's first rating of an
# image in a most-informative-first round with re-scoring on, with
# ``round_id``; models_ml re-scores the round when enough have come in.
first_rating_committed = Signal()


@receiver(user_logged_in)
def _logged_in(
    sender: Any, request: HttpRequest | Request | None, user: User, **kwargs: Any
) -> None:
    audit_record(action="login", actor=user, request=request)


@receiver(user_logged_out)
def _logged_out(
    sender: Any, request: HttpRequest | None, user: User | None, **kwargs: Any
) -> None:
    if user is not None:
        audit_record(action="logout", actor=user, request=request)


@receiver(user_login_failed)
def _login_failed(
    sender: Any,
    credentials: dict[str, Any],
    request: HttpRequest | Request | None = None,
    **kwargs: Any,
) -> None:
    audit_record(
        action="login_failed",
        actor_name=str(credentials.get("username", ""))[:150],
        request=request,
    )
