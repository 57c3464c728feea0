"""The arithmetic of serving: how many repeats a physician is owed, and how
densely the agreement set is spread through a session.  No database here;
``rating.serving`` serves by these rules and ``selectors`` counts by them.
"""

from __future__ import annotations

REPEAT_GAP = 10
"""A repeat comes back only after at least this many other images were served."""


def repeats_owed(*, repeat_share: float, firsts_rated: int) -> int:
    """Repeats a physician who rated ``firsts_rated`` images is owed.

    ``repeat_share`` of them, but never more than ``firsts_rated - REPEAT_GAP``:
    a physician with at most ``REPEAT_GAP`` images gets none (a repeat could
    not keep its gap), and with that bound the last repeats of a session can
    always be served once nothing new is left.
    """
    if repeat_share <= 0:
        return 0
    return max(0, min(int(repeat_share * firsts_rated), firsts_rated - REPEAT_GAP))


def agreement_target(
    *, agreement_share: float, raters_per_image: int, physicians: int
) -> float:
    """The share of a physician's first showings that should be agreement items.

    With ``a`` the agreement share, ``k`` raters per image and ``P`` physicians
    allowed, each physician rates the ``a·N`` agreement items plus about
    ``(1-a)·N·k / P`` others, so the set is spread evenly over a session at
    ``a / (a + (1-a)·k/P)``.  Physicians who never come make ``P`` too large
    and the set arrive earlier, which is the safe side for overlap.
    """
    a = agreement_share
    if a <= 0:
        return 0.0
    if a >= 1:
        return 1.0
    return a / (a + (1 - a) * raters_per_image / max(physicians, 1))
