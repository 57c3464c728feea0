"""Deployment checks of our own (``manage.py check --deploy``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register

PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.caches, deploy=True)
def shared_cache(**kwargs: Any) -> list[Warning]:
    """Several server processes need one cache: the login throttle counts
    attempts in it, and rating progress is cached in it per round and
    physician (a process with its own cache recounts a large round)."""
    backend = settings.CACHES["default"]["BACKEND"]
    if backend not in PER_PROCESS_CACHES:
        return []
    return [
        Warning(
            f"The default cache ({backend.rsplit('.', 1)[-1]}) is private to each "
            "server process: login throttling is counted per process and "
            "every process recounts round progress.",
            hint="Set CACHE_URL to a shared cache, e.g. redis://127.0.0.1:6379/1.",
            id="medrlhf.W001",
        )
    ]
