"""Routes of the rating platform's API, included under /api/."""

from django.urls import path

import medrlhf.converters  # noqa: F401  (registers <id:...>)

from . import agreement, auth, datasets, export, images, ratings, rounds

urlpatterns = [
    path("auth/token/", auth.TokenCreateApi.as_view(), name="api-token"),
    path("auth/token/rotate/", auth.TokenRotateApi.as_view(), name="api-token-rotate"),
    path("auth/token/revoke/", auth.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("datasets/", datasets.DatasetListApi.as_view(), name="api-dataset-list"),
    path(
        "datasets/import/",
        datasets.DatasetImportApi.as_view(),
        name="api-dataset-import",
    ),
    path(
        "datasets/<id:dataset_id>/",
        datasets.DatasetDetailApi.as_view(),
        name="api-dataset-detail",
    ),
    path(
        "images/<uuid:uid>/", images.ImageDetailApi.as_view(), name="api-image-detail"
    ),
    path(
        "images/<uuid:uid>/file/", images.ImageFileApi.as_view(), name="api-image-file"
    ),
    path(
        "images/<uuid:uid>/release/",
        images.ImageReleaseApi.as_view(),
        name="api-image-release",
    ),
    path("rounds/", rounds.RoundsApi.as_view(), name="api-rounds"),
    path(
        "rounds/<id:round_id>/",
        rounds.RoundDetailApi.as_view(),
        name="api-round-detail",
    ),
    path(
        "rounds/<id:round_id>/open/",
        rounds.RoundOpenApi.as_view(),
        name="api-round-open",
    ),
    path(
        "rounds/<id:round_id>/close/",
        rounds.RoundCloseApi.as_view(),
        name="api-round-close",
    ),
    path(
        "rounds/<id:round_id>/next/",
        rounds.RoundNextApi.as_view(),
        name="api-round-next",
    ),
    path(
        "rounds/<id:round_id>/images/<uuid:uid>/",
        rounds.RoundImageApi.as_view(),
        name="api-round-image",
    ),
    path(
        "rounds/<id:round_id>/skip/",
        rounds.RoundSkipApi.as_view(),
        name="api-round-skip",
    ),
    path(
        "rounds/<id:round_id>/undo/",
        rounds.RoundUndoApi.as_view(),
        name="api-round-undo",
    ),
    path(
        "rounds/<id:round_id>/agreement/",
        agreement.RoundAgreementApi.as_view(),
        name="api-round-agreement",
    ),
    path(
        "rounds/<id:round_id>/agreement/reward/",
        agreement.RoundAgreementRewardApi.as_view(),
        name="api-round-agreement-reward",
    ),
    path("ratings/", ratings.RatingCreateApi.as_view(), name="api-rating-create"),
    path("ratings/mine/", ratings.RatingMineApi.as_view(), name="api-rating-mine"),
    path(
        "ratings/<id:rating_id>/",
        ratings.RatingDetailApi.as_view(),
        name="api-rating-detail",
    ),
    path(
        "export/ratings.csv",
        export.RatingExportApi.as_view(),
        name="api-export-ratings",
    ),
    path("export/pairs.csv", export.PairExportApi.as_view(), name="api-export-pairs"),
    path(
        "export/dataset.zip",
        export.DatasetExportApi.as_view(),
        name="api-export-dataset",
    ),
]
