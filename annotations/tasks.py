"""Background work of the rating platform (the ``default`` queue)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="annotations.tasks.round_display_prepare", acks_late=True)
def round_display_prepare_task(round_id: int) -> int:
    """Write a large round's display renditions (``presentation``) in the
    worker; an image asked for before its turn is rendered on request."""
    from .models import Round
    from .presentation import round_display_prepare

    rnd = Round.objects.filter(pk=round_id).first()
    return 0 if rnd is None else round_display_prepare(rnd)
