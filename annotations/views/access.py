"""Role checks shared by the page views."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase
from django_htmx.middleware import HtmxDetails

from ..users import AnyUser, AuthedRequest

View = Callable[..., HttpResponseBase]


class HtmxRequest(AuthedRequest):
    """A signed-in request as django-htmx's middleware leaves it: ``htmx``
    says whether htmx sent it."""

    htmx: HtmxDetails


def role_required(check: Callable[[AnyUser], bool]) -> Callable[[View], View]:
    """Log in first, then answer 403 unless ``check(user)`` holds."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(
            request: HttpRequest, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorator
