"""Admin pages for datasets: list, upload or server-folder import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from ..errors import DomainError
from ..forms import DatasetFolderForm, DatasetUploadForm
from ..models import Dataset
from ..roles import is_admin
from ..services.imports import dataset_import_start
from .access import role_required

TEMPLATE = "annotations/datasets.html"


def _page(
    request: HttpRequest,
    *,
    upload_form: DatasetUploadForm | None = None,
    folder_form: DatasetFolderForm | None = None,
    status: int = 200,
) -> HttpResponse:
    datasets = Dataset.objects.annotate(
        n_images=Count("images"),
        n_quarantined=Count("images", filter=Q(images__quarantined=True)),
    )
    context = {
        "datasets": datasets,
        "upload_form": upload_form or DatasetUploadForm(prefix="upload"),
        "folder_form": folder_form or DatasetFolderForm(prefix="folder"),
    }
    return render(request, TEMPLATE, context, status=status)


@require_GET
@role_required(is_admin)
def datasets_list(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@role_required(is_admin)
def datasets_upload(request: HttpRequest) -> HttpResponse:
    form = DatasetUploadForm(request.POST, request.FILES, prefix="upload")
    if not form.is_valid():
        return _page(request, upload_form=form, status=400)
    return _start_import(
        request, form, upload=form.cleaned_data["file"], form_name="upload_form"
    )


@require_POST
@role_required(is_admin)
def datasets_import_folder(request: HttpRequest) -> HttpResponse:
    form = DatasetFolderForm(request.POST, prefix="folder")
    if not form.is_valid():
        return _page(request, folder_form=form, status=400)
    return _start_import(
        request, form, source=Path(form.cleaned_data["path"]), form_name="folder_form"
    )


def _start_import(
    request: HttpRequest,
    form: Any,
    *,
    form_name: str,
    source: Path | None = None,
    upload: Any = None,
) -> HttpResponse:
    data = form.cleaned_data
    try:
        job = dataset_import_start(
            name=data["name"],
            source=source,
            upload=upload,
            created_by=request.user,
            on_error=data["on_error"],
            modality=data["modality"] or None,
            nifti_axis=data["nifti_axis"],
            description=data["description"],
        )
    except DomainError as exc:
        form.add_error(None, str(exc))
        return _page(request, status=exc.status_code, **{form_name: form})
    return redirect("job", job_id=job.pk)
