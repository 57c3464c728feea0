"""Image files, served only to those allowed to see them.

URLs, headers and file names carry the image's random uid and nothing else,
so nothing reveals source, round or model.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from ..audit import image_view_record
from ..models import Image
from ..roles import is_admin
from ..selectors import image_visible_to


def _serve(request: HttpRequest, uid: UUID, field: str) -> FileResponse:
    image = get_object_or_404(Image, uid=uid)
    # Not visible and not existing look the same: 404 either way.
    if not image_visible_to(image=image, user=request.user):
        raise Http404
    if image.quarantined and not is_admin(request.user):
        raise Http404
    stored = getattr(image, field)
    if not stored:
        raise Http404
    try:
        handle = stored.open("rb")
    except FileNotFoundError as exc:
        raise Http404 from exc
    image_view_record(
        image=image,
        user=request.user,
        what="preview" if field == "preview" else "file",
        request=request,
    )
    response = FileResponse(handle, content_type="image/png", filename=f"{uid.hex}.png")
    response["Cache-Control"] = "private, max-age=600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@login_required
def image_preview(request: HttpRequest, uid: UUID) -> FileResponse:
    """The 8-bit display rendering used by the rating page."""
    return _serve(request, uid, "preview")


@require_GET
@login_required
def image_file(request: HttpRequest, uid: UUID) -> FileResponse:
    """The stored full-range PNG."""
    return _serve(request, uid, "file")
