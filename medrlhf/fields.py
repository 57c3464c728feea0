"""Serializer fields shared by the apps' APIs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .converters import MAX_ID


class IdField(serializers.IntegerField):
    """A primary key sent in a body or a query: 1 to 2**63 - 1.

    A larger number is refused like any other bad value (400) before it can
    reach a query, where SQLite would overflow on it.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)
