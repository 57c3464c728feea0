"""DRF permission classes: by role for a view, and per object.

Objects a user may not see answer 404 rather than 403, so that a physician
cannot learn which image or round ids exist.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from annotations.rating.access import rater_may_rate

from .models import Image, Rating, Round
from .roles import is_admin, is_physician, is_researcher
from .selectors import image_visible_to, rounds_visible_to


class IsAdmin(BasePermission):
    message = "Only admins may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_admin(request.user)


class IsResearcherOrAdmin(BasePermission):
    message = "Only researchers and admins may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_admin(request.user) or is_researcher(request.user)


class IsPhysician(BasePermission):
    message = "Only physicians rate images."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_physician(request.user)


class ReadOnlyForResearcher(BasePermission):
    """Admins may do anything; researchers only read."""

    message = "Researchers have read-only access here."

    def has_permission(self, request: Request, view: Any) -> bool:
        if is_admin(request.user):
            return True
        return is_researcher(request.user) and request.method in SAFE_METHODS

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return self.has_permission(request, view)


class CanSeeImage(BasePermission):
    """Physicians see only images served to them; a hidden image is a 404."""

    def has_object_permission(self, request: Request, view: Any, obj: Image) -> bool:
        if not image_visible_to(image=obj, user=request.user):
            raise NotFound("No such image.")
        return True


class CanSeeRound(BasePermission):
    """Rounds outside ``rounds_visible_to`` do not exist for the user."""

    def has_object_permission(self, request: Request, view: Any, obj: Round) -> bool:
        if not rounds_visible_to(request.user).filter(pk=obj.pk).exists():
            raise NotFound("No such round.")
        return True


class CanRateRound(BasePermission):
    """A round this physician does not rate does not exist for them.

    Closed rounds still resolve, so that rating actions answer 409, not 404.
    """

    def has_object_permission(self, request: Request, view: Any, obj: Round) -> bool:
        if not rater_may_rate(round=obj, rater=request.user):
            raise NotFound("No such round.")
        return True


class CanSeeRating(BasePermission):
    """A physician sees only their own ratings; researchers and admins all."""

    def has_object_permission(self, request: Request, view: Any, obj: Rating) -> bool:
        if obj.rater_id == request.user.pk:
            return True
        if is_admin(request.user) or is_researcher(request.user):
            return True
        raise NotFound("No such rating.")
