"""Hiding the server's file system from those who do not run it.

Job parameters, results and errors, and model versions, name folders on the
server (the models folder, an import folder, a traceback's source files).
Admins run the server and see them as they are; anyone else sees each known
root replaced by a label (``<models>/3f2a…/unet``), so the layout of the
machine does not leak.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework import serializers

if TYPE_CHECKING:
    from annotations.users import AnyUser


def _roots() -> list[tuple[str, str]]:
    pairs: list[tuple[str | Path, str]] = [
        (settings.UPLOAD_STAGING_DIR, "<uploads>"),
        (settings.MODELS_DIR, "<models>"),
        (settings.MEDIA_ROOT, "<media>"),
        *((root, "<imports>") for root in settings.IMPORT_ROOTS),
        (settings.VAR_DIR, "<var>"),
        (sys.prefix, "<python>"),
        (sys.base_prefix, "<python>"),
        (settings.BASE_DIR, "<app>"),
    ]
    out: list[tuple[str, str]] = []
    for root, label in pairs:
        for form in {str(Path(root)), str(Path(root).resolve())}:
            out.append((form.rstrip("/"), label))
    # Longest first, so a root inside another gets its own label.
    return sorted(set(out), key=lambda pair: -len(pair[0]))


@lru_cache(maxsize=8)
def _pattern(
    key: tuple[tuple[str, str], ...],
) -> tuple[re.Pattern[str], dict[str, str]]:
    labels = dict(key)
    alternatives = "|".join(re.escape(root) for root, _ in key)
    # A root, then the end, a separator or a character that ends a path.
    return re.compile(f"({alternatives})(?=$|[/\\s'\",:;)\\]])"), labels


_ANY_ABSOLUTE = re.compile(r"(?<![\w.<>])/(?:[\w.+-]+/)+[\w.+-]+")


def _last_part(match: re.Match[str]) -> str:
    return "<server>/" + match.group(0).rsplit("/", 1)[-1]


def hide_server_paths(value: Any) -> Any:
    """``value`` with every absolute server path made anonymous."""
    if isinstance(value, str):
        pattern, labels = _pattern(tuple(_roots()))
        text = pattern.sub(lambda m: labels[m.group(1)], value)
        # Any other absolute path: only its last part.
        return _ANY_ABSOLUTE.sub(
            lambda m: "<server>/" + m.group(0).rsplit("/", 1)[-1], text
        )
    if isinstance(value, dict):
        return {key: hide_server_paths(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [hide_server_paths(item) for item in value]
    return value


def sees_server_paths(user: AnyUser | None) -> bool:
    from annotations.roles import is_admin

    return bool(user is not None and is_admin(user))


class ServerPathsHidden(serializers.Serializer):
    """A serializer whose output hides server paths from non-admins (the
    request comes in its context)."""

    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)
        request = self.context.get("request")
        if sees_server_paths(getattr(request, "user", None)):
            return data
        return hide_server_paths(data)
