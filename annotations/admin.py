"""Admin pages. Accounts are created here (or with manage.py create_user) with a
role and a random password shown once; the rest is mostly read-only, since
writes belong to the product's own pages and services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from . import users
from .audit import audit_record
from .models import (
    ApiToken,
    AuditEvent,
    Dataset,
    ExpertLevel,
    Image,
    RaterProfile,
    Rating,
    Role,
    Round,
)
from .services.tokens import token_revoke
from .services.users import user_create

User = get_user_model()


def _changed_fields(message: Any) -> list[str]:
    """Field names from the admin's change message (a JSON list)."""
    import json

    try:
        parts = json.loads(message) if isinstance(message, str) else message
    except ValueError:
        return []
    fields: list[str] = []
    for part in parts or []:
        if isinstance(part, dict) and "changed" in part:
            fields += [str(f) for f in part["changed"].get("fields", [])]
    return fields


class AuditedAdmin(admin.ModelAdmin):
    """Every add, change and delete made in the Django admin also goes to
    the product's append-only audit log (Django's own LogEntry can be
    edited), naming the admin, the object and the fields changed; a
    password change is its own action, and never records the password."""

    def _audit(
        self, request: HttpRequest, obj: Any, action: str, **detail: Any
    ) -> None:
        detail["model"] = obj._meta.label_lower
        audit_record(
            action=action, actor=request.user, obj=obj, detail=detail, request=request
        )

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        self._audit(request, obj, "admin_add")
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        fields = _changed_fields(message)
        action = (
            "admin_password_change"
            if any("password" in f.lower() for f in fields)
            else "admin_change"
        )
        self._audit(request, obj, action, fields=fields)
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        for obj in queryset:
            self._audit(request, obj, "admin_delete", name=str(obj)[:200])
        return super().log_deletions(request, queryset)


class RoleUserCreationForm(forms.ModelForm):
    role = forms.ChoiceField(choices=Role.choices)
    expert_level = forms.ChoiceField(
        choices=ExpertLevel.choices, initial=ExpertLevel.SPECIALIST
    )

    class Meta:
        model = User
        fields = ("username", "email")


class RaterProfileInline(admin.StackedInline):
    model = RaterProfile
    can_delete = False


class MedrlhfUserAdmin(AuditedAdmin, UserAdmin):
    add_form = RoleUserCreationForm
    add_fieldsets = ((None, {"fields": ("username", "email", "role", "expert_level")}),)
    inlines = [RaterProfileInline]
    list_display = ("username", "email", "is_active", "is_staff", "last_login")

    def get_inlines(
        self, request: HttpRequest, obj: users.User | None = None
    ) -> list[Any]:
        return [RaterProfileInline] if obj is not None else []

    def save_model(
        self, request: HttpRequest, obj: users.User, form: Any, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        user, password = user_create(
            username=form.cleaned_data["username"],
            email=form.cleaned_data.get("email", ""),
            role=form.cleaned_data["role"],
            expert_level=form.cleaned_data["expert_level"],
            created_by=users.signed_in(request),  # the admin site checked the login
        )
        obj.pk = user.pk
        obj.refresh_from_db()
        messages.warning(
            request,
            f"Password for {user.username} (shown once, pass it on securely): "
            f"{password}",
        )

    def save_related(
        self, request: HttpRequest, form: Any, formsets: Any, change: bool
    ) -> None:
        if not change:
            return
        user = form.instance
        before = set(user.groups.values_list("name", flat=True))
        super().save_related(request, form, formsets, change)
        after = set(user.groups.values_list("name", flat=True))
        if before != after:
            # Roles are groups: who gained or lost which, by whose hand.
            self._audit(
                request,
                user,
                "admin_role_change",
                added=sorted(after - before),
                removed=sorted(before - after),
            )


admin.site.unregister(User)
admin.site.register(User, MedrlhfUserAdmin)


@admin.register(Dataset)
class DatasetAdmin(AuditedAdmin):
    list_display = ("name", "created_at", "created_by")
    readonly_fields = ("import_report", "modalities", "root", "created_by")


@admin.register(Image)
class ImageAdmin(AuditedAdmin):
    list_display = (
        "uid",
        "modality",
        "source",
        "dataset",
        "quarantined",
        "reward_score",
    )
    list_filter = ("source", "modality", "quarantined")
    search_fields = ("prompt",)
    readonly_fields = [f.name for f in Image._meta.fields]


@admin.register(Round)
class RoundAdmin(AuditedAdmin):
    list_display = ("name", "status", "raters_per_image", "control_share", "created_at")
    list_filter = ("status",)
    readonly_fields = ("status", "opened_at", "closed_at", "created_by")


@admin.register(Rating)
class RatingAdmin(AuditedAdmin):
    list_display = ("rater", "round", "score", "created_at", "retracted_at")
    list_filter = ("round", "score")
    readonly_fields = [f.name for f in Rating._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(AuditedAdmin):
    list_display = (
        "created_at",
        "actor_name",
        "action",
        "object_type",
        "object_id",
        "ip_address",
    )
    list_filter = ("action",)
    search_fields = ("actor_name", "object_id")
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Tokens live hashed in ApiToken; DRF's own plain-text token admin would make
# keys that the API does not accept.
try:
    from rest_framework.authtoken.models import TokenProxy

    admin.site.unregister(TokenProxy)
except (ImportError, NotRegistered):
    pass


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdmin):
    list_display = ("prefix", "user", "created_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "prefix")
    readonly_fields = [f.name for f in ApiToken._meta.fields]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issued at login, shown once

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.filter(revoked_at=None):
            token_revoke(token=token, actor=users.signed_in(request), request=request)
