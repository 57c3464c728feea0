from django.contrib.auth import views as auth_views
from django.urls import path

import medrlhf.converters  # noqa: F401  (registers <id:...>)

from .views import agreement, datasets, exports, images, pages, rating, rounds

urlpatterns = [
    path("", pages.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("rate/keys/", rating.rate_keys, name="rate-keys"),
    path("rate/<id:round_id>/", rating.rate, name="rate"),
    path("rate/<id:round_id>/submit/", rating.rate_submit, name="rate-submit"),
    path("rate/<id:round_id>/skip/", rating.rate_skip, name="rate-skip"),
    path("rate/<id:round_id>/undo/", rating.rate_undo, name="rate-undo"),
    path(
        "rate/<id:round_id>/images/<uuid:uid>.png",
        images.round_image,
        name="rate-image",
    ),
    path("images/<uuid:uid>/preview.png", images.image_preview, name="image-preview"),
    path("images/<uuid:uid>/image.png", images.image_file, name="image-file"),
    path("manage/rounds/", rounds.rounds_list, name="rounds"),
    path("manage/rounds/new/", rounds.rounds_create, name="rounds-create"),
    path("manage/rounds/<id:round_id>/open/", rounds.rounds_open, name="rounds-open"),
    path(
        "manage/rounds/<id:round_id>/close/", rounds.rounds_close, name="rounds-close"
    ),
    path("manage/datasets/", datasets.datasets_list, name="datasets"),
    path("manage/datasets/upload/", datasets.datasets_upload, name="datasets-upload"),
    path(
        "manage/datasets/import/",
        datasets.datasets_import_folder,
        name="datasets-import-folder",
    ),
    path(
        "manage/datasets/<id:dataset_id>/quarantine/",
        datasets.dataset_quarantine,
        name="dataset-quarantine",
    ),
    path(
        "manage/datasets/<id:dataset_id>/quarantine/<id:image_id>/release/",
        datasets.dataset_quarantine_release,
        name="dataset-quarantine-release",
    ),
    path("agreement/", agreement.agreement_index, name="agreement-index"),
    path(
        "rounds/<id:round_id>/agreement/",
        agreement.round_agreement,
        name="round-agreement",
    ),
    path("export/", exports.export_page, name="export"),
    path("export/ratings.csv", exports.export_download, name="export-download"),
    path("export/pairs.csv", exports.export_pairs, name="export-pairs"),
    path("export/dataset.zip", exports.export_dataset, name="export-dataset"),
]
