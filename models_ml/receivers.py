"""What the learning loop does when the rating platform announces something."""

from __future__ import annotations

from typing import Any

from annotations.models import Round

from .gate import comparison_decide
from .models import Comparison


def decide_comparison_on_close(sender: Any, round: Round, **kwargs: Any) -> None:
    """A comparison round that closes records its verdict (``gate.py``)."""
    comparison = Comparison.objects.filter(round=round, decided_at=None).first()
    if comparison is not None:
        comparison_decide(comparison=comparison)
