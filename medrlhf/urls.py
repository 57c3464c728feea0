from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("medrlhf.api_urls")),
    path("", include("models_ml.urls")),
    path("", include("annotations.urls")),
]
