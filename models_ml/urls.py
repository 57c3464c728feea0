from django.urls import path

import medrlhf.converters  # noqa: F401  (registers <id:...>)

from .views import dashboard, generate, jobs, lineage, retraining, review, rounds

urlpatterns = [
    # The loop's actions on a round, from the admin's rounds list.
    path(
        "manage/rounds/<id:round_id>/score/", rounds.rounds_score, name="rounds-score"
    ),
    path(
        "manage/rounds/<id:round_id>/abandon/",
        rounds.rounds_abandon,
        name="rounds-abandon",
    ),
    path(
        "manage/rounds/<id:round_id>/retry-generation/",
        rounds.rounds_retry_generation,
        name="rounds-retry-generation",
    ),
    # Any job's page (an import's too): status polled by htmx, and cancel.
    path("jobs/<id:job_id>/", jobs.job_detail, name="job"),
    path("jobs/<id:job_id>/status/", jobs.job_status, name="job-status"),
    path("jobs/<id:job_id>/cancel/", jobs.job_cancel_view, name="job-cancel"),
    path("generate/", generate.generate_page, name="ml-generate"),
    path("generate/<id:job_id>/", generate.generate_job, name="ml-generate-job"),
    path(
        "generate/<id:job_id>/cancel/",
        generate.generate_job_cancel,
        name="ml-generate-job-cancel",
    ),
    path(
        "generate/<id:job_id>/status/",
        generate.generate_job_status,
        name="ml-generate-job-status",
    ),
    path(
        "generate/<id:job_id>/images.zip",
        generate.generate_download,
        name="ml-generate-download",
    ),
    path(
        "generate/images/<uuid:uid>.png",
        generate.generated_image,
        name="ml-generated-image",
    ),
    path("models/lineage/", lineage.lineage_page, name="ml-lineage"),
    path("models/versions/<id:version_id>/", lineage.version_page, name="ml-version"),
    path(
        "models/samples/<id:sample_id>.png",
        lineage.version_sample,
        name="ml-version-sample",
    ),
    path("models/retraining/", retraining.retraining_page, name="ml-retraining"),
    path(
        "models/retraining/proposal/",
        retraining.retraining_proposal,
        name="ml-retraining-proposal",
    ),
    path(
        "models/retraining/start/",
        retraining.retraining_start,
        name="ml-retraining-start",
    ),
    path(
        "models/rounds/generate/", retraining.round_generate, name="ml-round-generate"
    ),
    path("models/jobs/<id:job_id>/", retraining.ml_job, name="ml-job"),
    path(
        "models/jobs/<id:job_id>/status/",
        retraining.ml_job_status,
        name="ml-job-status",
    ),
    path("models/dashboard/", dashboard.dashboard_page, name="ml-dashboard"),
    path("models/review/", review.review_page, name="ml-review"),
    path("models/review/round/", review.review_round, name="ml-review-round"),
]
