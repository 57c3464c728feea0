"""Releasing a quarantined image once an admin has looked at it.

Import quarantines images that declare burned-in text, or whose header does
not say for a modality that often has it (engine ``burned_in_reason``). A
quarantined image is never served to physicians, put in a round or trained
on. An admin who has looked at the pixels may release it; the release names
who, when and what they checked, in the audit log.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest

from ..audit import audit_record
from ..errors import DomainError
from ..models import Image
from ..roles import is_admin
from ..users import AnyUser

MAX_NOTE = 500


@transaction.atomic
def image_release(
    *, image: Image, actor: AnyUser, note: str, request: HttpRequest | None = None
) -> Image:
    """Serve ``image`` from now on; ``note`` says what the admin checked."""
    if not is_admin(actor):
        raise DomainError("only admins may release a quarantined image")
    note = (note or "").strip()
    if not note:
        raise DomainError("say what you checked (e.g. 'no text in the image')")
    if len(note) > MAX_NOTE:
        raise DomainError(f"the note is longer than {MAX_NOTE} characters")
    locked = Image.objects.select_for_update().get(pk=image.pk)
    if not locked.quarantined:
        raise DomainError("this image is not quarantined")
    reason = locked.quarantine_reason
    locked.quarantined = False
    locked.quarantine_reason = ""
    locked.save(update_fields=["quarantined", "quarantine_reason", "updated_at"])
    audit_record(
        action="image_release",
        actor=actor,
        obj=locked,
        detail={"reason": reason, "note": note, "uid": locked.uid.hex},
        request=request,
    )
    return locked
