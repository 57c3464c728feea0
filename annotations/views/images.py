"""Image files, served only to those allowed to see them.

URLs, headers and file names carry the image's random uid and nothing else,
so nothing reveals source, round or model.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from ..audit import image_view_record
from ..models import Image, Round
from ..presentation import display_bytes
from ..roles import is_admin
from ..selectors import display_image_for, image_files_visible_to, image_visible_to
from ..users import AuthedRequest


def display_response(*, request: HttpRequest, round: Round, uid: UUID) -> HttpResponse:
    """An image as its round shows it (``presentation``), for the page and
    the API alike: the same headers for every image, and a 404 for one the
    user may not see, whether or not it exists."""
    image = display_image_for(round=round, uid=uid, user=request.user)
    if image is None:
        raise Http404
    try:
        data = display_bytes(round, image)
    except FileNotFoundError as exc:
        raise Http404 from exc
    image_view_record(image=image, user=request.user, what="display", request=request)
    response = HttpResponse(data, content_type="image/png")
    response["Content-Disposition"] = f'inline; filename="{uid.hex}.png"'
    response["Cache-Control"] = "private, max-age=600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@login_required
def round_image(request: AuthedRequest, round_id: int, uid: UUID) -> HttpResponse:
    """An image of a round, as every image of that round is shown."""
    rnd = get_object_or_404(Round, pk=round_id)
    return display_response(request=request, round=rnd, uid=uid)


def _serve(request: AuthedRequest, uid: UUID, field: str) -> FileResponse:
    image = get_object_or_404(Image, uid=uid)
    # Not visible and not existing look the same: 404 either way. Physicians
    # see images only through their round's presentation (round_image).
    if not image_files_visible_to(user=request.user):
        raise Http404
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
def image_preview(request: AuthedRequest, uid: UUID) -> FileResponse:
    """The 8-bit display rendering used by the rating page."""
    return _serve(request, uid, "preview")


@require_GET
@login_required
def image_file(request: AuthedRequest, uid: UUID) -> FileResponse:
    """The stored full-range PNG."""
    return _serve(request, uid, "file")
