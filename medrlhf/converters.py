"""URL converters. Importing this module registers them.

``<id:name>`` is a primary key: 1 to 18 digits, so every value it matches
fits the databases' 64-bit integer columns. A longer number does not match
the pattern and the request gets 404, instead of reaching the database and
overflowing there (SQLite raises OverflowError for integers over 2**63 - 1).
"""

from __future__ import annotations

import re

from django.urls import register_converter


class IdConverter:
    regex = "[0-9]{1,18}"

    @classmethod
    def regex_match(cls, value: str) -> bool:
        """Whether ``value`` (from a query string, say) is such an id."""
        return re.fullmatch(cls.regex, value) is not None

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int | str) -> str:
        return str(int(value))


register_converter(IdConverter, "id")


# The largest primary key the databases' 64-bit integer columns hold.
MAX_ID = 2**63 - 1
