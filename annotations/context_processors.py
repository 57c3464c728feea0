from django.http import HttpRequest

from .roles import user_roles


def roles(request: HttpRequest) -> dict[str, object]:
    found = user_roles(request.user)
    return {
        "roles": found,
        "is_physician": "physician" in found,
        "is_admin_role": "admin" in found,
        "is_researcher": "researcher" in found,
    }
