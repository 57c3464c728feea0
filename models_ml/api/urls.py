"""The learning loop's API routes, under /api/ (medrlhf/api_urls.py)."""

from django.urls import path

import medrlhf.converters  # noqa: F401  (registers <id:...>)

from . import gate, generation, jobs, retraining, review, rounds, training, versions

urlpatterns = [
    path("jobs/", jobs.JobListApi.as_view(), name="api-job-list"),
    path("jobs/<id:job_id>/", jobs.JobDetailApi.as_view(), name="api-job-detail"),
    path(
        "jobs/<id:job_id>/cancel/",
        jobs.JobCancelApi.as_view(),
        name="api-job-cancel",
    ),
    path(
        "model-versions/",
        versions.ModelVersionListApi.as_view(),
        name="api-model-version-list",
    ),
    path(
        "model-versions/tree/",
        versions.ModelVersionTreeApi.as_view(),
        name="api-model-version-tree",
    ),
    path(
        "model-versions/register/",
        versions.ModelVersionRegisterApi.as_view(),
        name="api-model-version-register",
    ),
    path(
        "model-versions/<id:version_id>/",
        versions.ModelVersionDetailApi.as_view(),
        name="api-model-version-detail",
    ),
    path(
        "model-versions/<id:version_id>/finetune/",
        training.ModelVersionFinetuneApi.as_view(),
        name="api-model-version-finetune",
    ),
    path(
        "datasets/<id:dataset_id>/train-base/",
        training.DatasetTrainBaseApi.as_view(),
        name="api-dataset-train-base",
    ),
    path(
        "rounds/generate/",
        rounds.RoundGenerateApi.as_view(),
        name="api-round-generate",
    ),
    path(
        "rounds/<id:round_id>/score/",
        rounds.RoundScoreApi.as_view(),
        name="api-round-score",
    ),
    path("retraining/", retraining.RetrainingStartApi.as_view(), name="api-retraining"),
    path("comparisons/", gate.ComparisonListApi.as_view(), name="api-comparisons"),
    path(
        "comparisons/<id:comparison_id>/",
        gate.ComparisonDetailApi.as_view(),
        name="api-comparison-detail",
    ),
    path(
        "retraining/<str:chain_id>/",
        retraining.RetrainingDetailApi.as_view(),
        name="api-retraining-detail",
    ),
    path(
        "reward-models/train/",
        training.RewardModelTrainApi.as_view(),
        name="api-reward-model-train",
    ),
    path("generate/", generation.GenerateApi.as_view(), name="api-generate"),
    path(
        "generate/<id:job_id>/",
        generation.GenerateDetailApi.as_view(),
        name="api-generate-detail",
    ),
    path(
        "generate/<id:job_id>/images/<uuid:uid>/",
        generation.GenerateImageFileApi.as_view(),
        name="api-generate-image",
    ),
    path(
        "generate/<id:job_id>/download.zip",
        generation.GenerateDownloadApi.as_view(),
        name="api-generate-download",
    ),
    path(
        "review/images/",
        review.ReviewImagesApi.as_view(),
        name="api-review-images",
    ),
    path(
        "review/rounds/",
        review.ReviewRoundCreateApi.as_view(),
        name="api-review-round-create",
    ),
    path(
        "rounds/<id:round_id>/abandon/",
        review.RoundAbandonApi.as_view(),
        name="api-round-abandon",
    ),
    path(
        "rounds/<id:round_id>/retry-generation/",
        review.RoundGenerationRetryApi.as_view(),
        name="api-round-retry-generation",
    ),
]
