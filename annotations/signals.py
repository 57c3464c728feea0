"""Logins and failed logins go to the audit log; and what the rating
platform announces for the learning loop to act on.

``round_closed`` is sent inside the transaction that closes a round (not an
abandoned one), with ``round``; ``models_ml`` decides a comparison round's
promotion gate on it. ``annotations`` never calls the loop's code itself.
"""

from typing import Any

from django.contrib.auth.signals import (
    user_logged_in,
    user_logged_out,
    user_login_failed,
)
from django.dispatch import Signal, receiver

from .audit import audit_record

round_closed = Signal()
# Sent after the transaction that saved a physician's first rating of an
# image in a most-informative-first round with re-scoring on, with
# ``round_id``; models_ml re-scores the round when enough have come in.
first_rating_committed = Signal()


@receiver(user_logged_in)
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record(action="login", actor=user, request=request)


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit_record(action="logout", actor=user, request=request)


@receiver(user_login_failed)
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    audit_record(
        action="login_failed",
        actor_name=str(credentials.get("username", ""))[:150],
        request=request,
    )
