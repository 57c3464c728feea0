"""Admin pages for datasets: list, upload or server-folder import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from ..errors import DomainError
from ..forms import DatasetFolderForm, DatasetUploadForm, ReleaseForm
from ..models import Dataset, Image
from ..roles import is_admin
from ..services.imports import dataset_import_start
from ..services.quarantine import image_release
from ..users import AuthedRequest
from .access import role_required

TEMPLATE = "annotations/datasets.html"


def _page(
    request: AuthedRequest,
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
def datasets_list(request: AuthedRequest) -> HttpResponse:
    return _page(request)


@require_POST
@role_required(is_admin)
def datasets_upload(request: AuthedRequest) -> HttpResponse:
    form = DatasetUploadForm(request.POST, request.FILES, prefix="upload")
    if not form.is_valid():
        return _page(request, upload_form=form, status=400)
    return _start_import(
        request, form, upload=form.cleaned_data["file"], form_name="upload_form"
    )


@require_POST
@role_required(is_admin)
def datasets_import_folder(request: AuthedRequest) -> HttpResponse:
    form = DatasetFolderForm(request.POST, prefix="folder")
    if not form.is_valid():
        return _page(request, folder_form=form, status=400)
    return _start_import(
        request, form, source=Path(form.cleaned_data["path"]), form_name="folder_form"
    )


def _start_import(
    request: AuthedRequest,
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


QUARANTINE_TEMPLATE = "annotations/quarantine.html"
QUARANTINE_PAGE = 60


def _quarantine_page(
    request: AuthedRequest,
    dataset: Dataset,
    *,
    forms: dict[int, ReleaseForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    images = list(
        dataset.images.filter(quarantined=True).order_by("id")[:QUARANTINE_PAGE]
    )
    forms = forms or {}
    rows = [
        (image, forms.get(image.pk) or ReleaseForm(prefix=str(image.pk)))
        for image in images
    ]
    context = {
        "dataset": dataset,
        "rows": rows,
        "total": dataset.images.filter(quarantined=True).count(),
        "shown": len(images),
    }
    return render(request, QUARANTINE_TEMPLATE, context, status=status)


@require_GET
@role_required(is_admin)
def dataset_quarantine(request: AuthedRequest, dataset_id: int) -> HttpResponse:
    """A dataset's quarantined images, each with a release form."""
    return _quarantine_page(request, get_object_or_404(Dataset, pk=dataset_id))


@require_POST
@role_required(is_admin)
def dataset_quarantine_release(
    request: AuthedRequest, dataset_id: int, image_id: int
) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    image = get_object_or_404(Image, pk=image_id, dataset=dataset)
    form = ReleaseForm(request.POST, prefix=str(image.pk))
    if form.is_valid():
        try:
            image_release(
                image=image,
                actor=request.user,
                note=form.cleaned_data["note"],
                request=request,
            )
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("dataset-quarantine", dataset_id=dataset.pk)
    return _quarantine_page(request, dataset, forms={image.pk: form}, status=400)
