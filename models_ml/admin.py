from django.contrib import admin

from .models import Job, ModelVersion


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "attempts", "created_at")
    list_filter = ("kind", "status")
    readonly_fields = [f.name for f in Job._meta.fields]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "backend", "parent", "rating_count", "created_at")
    list_filter = ("kind", "backend")
    readonly_fields = ("metrics", "params", "path", "job")
