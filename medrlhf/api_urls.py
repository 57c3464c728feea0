"""REST API routes, one APIView per use case, plus the schema and its docs page."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import medrlhf.converters  # noqa: F401  (registers <id:...>)
from models_ml import api as jobs_api
from models_ml import api_gate as gate_api
from models_ml import api_ml as ml_api
from models_ml import api_review as review_api

urlpatterns = [
    path("", include("annotations.api.urls")),
    path("jobs/", jobs_api.JobListApi.as_view(), name="api-job-list"),
    path("jobs/<id:job_id>/", jobs_api.JobDetailApi.as_view(), name="api-job-detail"),
    path(
        "jobs/<id:job_id>/cancel/",
        jobs_api.JobCancelApi.as_view(),
        name="api-job-cancel",
    ),
    path(
        "model-versions/",
        ml_api.ModelVersionListApi.as_view(),
        name="api-model-version-list",
    ),
    path(
        "model-versions/tree/",
        ml_api.ModelVersionTreeApi.as_view(),
        name="api-model-version-tree",
    ),
    path(
        "model-versions/register/",
        ml_api.ModelVersionRegisterApi.as_view(),
        name="api-model-version-register",
    ),
    path(
        "model-versions/<id:version_id>/",
        ml_api.ModelVersionDetailApi.as_view(),
        name="api-model-version-detail",
    ),
    path(
        "model-versions/<id:version_id>/finetune/",
        ml_api.ModelVersionFinetuneApi.as_view(),
        name="api-model-version-finetune",
    ),
    path(
        "datasets/<id:dataset_id>/train-base/",
        ml_api.DatasetTrainBaseApi.as_view(),
        name="api-dataset-train-base",
    ),
    path(
        "rounds/generate/",
        ml_api.RoundGenerateApi.as_view(),
        name="api-round-generate",
    ),
    path(
        "rounds/<id:round_id>/score/",
        ml_api.RoundScoreApi.as_view(),
        name="api-round-score",
    ),
    path("retraining/", ml_api.RetrainingStartApi.as_view(), name="api-retraining"),
    path("comparisons/", gate_api.ComparisonListApi.as_view(), name="api-comparisons"),
    path(
        "comparisons/<id:comparison_id>/",
        gate_api.ComparisonDetailApi.as_view(),
        name="api-comparison-detail",
    ),
    path(
        "retraining/<str:chain_id>/",
        ml_api.RetrainingDetailApi.as_view(),
        name="api-retraining-detail",
    ),
    path(
        "reward-models/train/",
        ml_api.RewardModelTrainApi.as_view(),
        name="api-reward-model-train",
    ),
    path("generate/", ml_api.GenerateApi.as_view(), name="api-generate"),
    path(
        "generate/<id:job_id>/",
        ml_api.GenerateDetailApi.as_view(),
        name="api-generate-detail",
    ),
    path(
        "generate/<id:job_id>/images/<uuid:uid>/",
        ml_api.GenerateImageFileApi.as_view(),
        name="api-generate-image",
    ),
    path(
        "generate/<id:job_id>/download.zip",
        ml_api.GenerateDownloadApi.as_view(),
        name="api-generate-download",
    ),
    path(
        "review/images/",
        review_api.ReviewImagesApi.as_view(),
        name="api-review-images",
    ),
    path(
        "review/rounds/",
        review_api.ReviewRoundCreateApi.as_view(),
        name="api-review-round-create",
    ),
    path(
        "rounds/<id:round_id>/abandon/",
        review_api.RoundAbandonApi.as_view(),
        name="api-round-abandon",
    ),
    path(
        "rounds/<id:round_id>/retry-generation/",
        review_api.RoundGenerationRetryApi.as_view(),
        name="api-round-retry-generation",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"
    ),
]
