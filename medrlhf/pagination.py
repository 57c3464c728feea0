"""The API's pagination: ``?limit=`` and ``?offset=`` with bounds.

DRF's LimitOffsetPagination takes any positive integer; one past 2**63
reached the database and overflowed there (500). Here a limit is at most
``MAX_LIMIT`` and an offset at most the largest id the database holds.
"""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination as _DrfLimitOffset
from rest_framework.request import Request

from .converters import MAX_ID

MAX_LIMIT = 1000


class LimitOffsetPagination(_DrfLimitOffset):
    max_limit = MAX_LIMIT

    def get_offset(self, request: Request) -> int:
        return min(super().get_offset(request), MAX_ID)
