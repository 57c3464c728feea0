"""Groups for the three roles, with the model permissions each needs.

Run after every migrate so new models' permissions reach the groups.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission

from .models import Role

ROLE_PERMISSIONS: dict[str, list[str]] = {
    Role.PHYSICIAN: ["annotations.add_rating", "annotations.view_round"],
    Role.RESEARCHER: [
        "annotations.view_rating",
        "annotations.view_round",
        "annotations.view_dataset",
        "annotations.view_image",
        "models_ml.view_modelversion",
        "models_ml.view_job",
    ],
    Role.ADMIN: [
        "annotations.*",
        "models_ml.*",
        "auth.add_user",
        "auth.change_user",
        "auth.view_user",
        "auth.view_group",
    ],
}


def roles_ensure(**kwargs: Any) -> None:
    for role, codes in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        perms: list[Permission] = []
        for code in codes:
            app, name = code.split(".")
            qs = Permission.objects.filter(content_type__app_label=app)
            if name != "*":
                qs = qs.filter(codename=name)
            perms.extend(qs)
        group.permissions.set(perms)
