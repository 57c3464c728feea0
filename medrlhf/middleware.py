"""Security headers that Django 5.2 does not set by itself."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# Scripts only from our own static files: a prompt holding <script> can never run,
# even if it escaped into a page unescaped.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # The API docs page loads its own assets; everything else gets the policy.
        if not request.path.startswith("/api/docs"):
            response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=()")
        return response
