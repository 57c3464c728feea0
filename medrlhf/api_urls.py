"""REST API routes, one APIView per use case, plus the schema and its docs page."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from models_ml import api as jobs_api

urlpatterns = [
    path("", include("annotations.api.urls")),
    path("jobs/", jobs_api.JobListApi.as_view(), name="api-job-list"),
    path("jobs/<int:job_id>/", jobs_api.JobDetailApi.as_view(), name="api-job-detail"),
    path(
        "jobs/<int:job_id>/cancel/",
        jobs_api.JobCancelApi.as_view(),
        name="api-job-cancel",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"
    ),
]
