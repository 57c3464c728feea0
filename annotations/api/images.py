"""Image metadata and files; physicians get a blinded view of their own images."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_ml.models import ModelVersion

from ..audit import image_view_record
from ..models import Dataset, Image, Round
from ..permissions import CanSeeImage, IsAdmin
from ..roles import is_admin, is_researcher
from ..selectors import image_files_visible_to
from ..services.quarantine import MAX_NOTE, image_release
from ..users import AnyUser
from .common import ErrorOutputSerializer, PNGRenderer


def image_for(*, request: Request, view: APIView, uid: uuid.UUID) -> Image:
    """The image, or 404 when it does not exist or the user may not see it."""
    image = get_object_or_404(
        Image.objects.select_related("dataset", "model_version"), uid=uid
    )
    view.check_object_permissions(request, image)
    return image


class BlindedImageSerializer(serializers.ModelSerializer):
    """What a physician may know: nothing about source, model, round or
    dataset, and not the stored size (their round's rendition has its own)."""

    class Meta:
        model = Image
        fields = ["uid", "prompt", "modality"]


class FullImageSerializer(serializers.ModelSerializer):
    dataset: serializers.PrimaryKeyRelatedField[Dataset] = (
        serializers.PrimaryKeyRelatedField(read_only=True)
    )
    dataset_name = serializers.CharField(
        source="dataset.name", default=None, read_only=True
    )
    model_version: serializers.PrimaryKeyRelatedField[ModelVersion] = (
        serializers.PrimaryKeyRelatedField(read_only=True)
    )
    model_version_name = serializers.CharField(
        source="model_version.name", default=None, read_only=True
    )
    generated_for_round: serializers.PrimaryKeyRelatedField[Round] = (
        serializers.PrimaryKeyRelatedField(read_only=True)
    )

    class Meta:
        model = Image
        fields = [
            "uid",
            "prompt",
            "modality",
            "width",
            "height",
            "bit_depth",
            "channels",
            "window_center",
            "window_width",
            "source",
            "source_path",
            "source_format",
            "frame_index",
            "sha256",
            "header",
            "quarantined",
            "quarantine_reason",
            "dataset",
            "dataset_name",
            "model_version",
            "model_version_name",
            "generation",
            "generated_for_round",
            "reward_score",
            "created_at",
        ]


def image_output(*, image: Image, user: AnyUser) -> dict[str, Any]:
    if is_admin(user) or is_researcher(user):
        return FullImageSerializer(image).data
    return BlindedImageSerializer(image).data


class ImageDetailApi(APIView):
    permission_classes = [IsAuthenticated, CanSeeImage]

    @extend_schema(
        operation_id="images_retrieve",
        responses={
            200: PolymorphicProxySerializer(
                component_name="ImageMetadata",
                serializers=[FullImageSerializer, BlindedImageSerializer],
                resource_type_field_name=None,
            ),
            404: ErrorOutputSerializer,
        },
        description="Admins and researchers get full metadata; physicians only "
        "uid, prompt, modality and size of images served to them.",
    )
    def get(self, request: Request, uid: uuid.UUID) -> Response:
        image = image_for(request=request, view=self, uid=uid)
        image_view_record(
            image=image, user=request.user, what="metadata", request=request._request
        )
        return Response(image_output(image=image, user=request.user))


class ImageFileApi(APIView):
    permission_classes = [IsAuthenticated, CanSeeImage]
    renderer_classes = [JSONRenderer, PNGRenderer]

    @extend_schema_serializer(component_name="ImageFileFilter")
    class FilterSerializer(serializers.Serializer):
        preview = serializers.BooleanField(
            default=False, help_text="The 8-bit preview instead of the full image."
        )

    @extend_schema(
        operation_id="images_file",
        parameters=[FilterSerializer],
        responses={
            (200, "image/png"): OpenApiTypes.BINARY,
            (404, "application/json"): ErrorOutputSerializer,
        },
    )
    def get(self, request: Request, uid: uuid.UUID) -> FileResponse:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if not image_files_visible_to(user=request.user):
            # Physicians fetch images as their round shows them.
            raise NotFound("No such image.")
        image = image_for(request=request, view=self, uid=uid)
        field = image.preview if query.validated_data["preview"] else image.file
        if not field:
            raise NotFound("This image has no stored file.")
        try:
            handle = field.open("rb")
        except FileNotFoundError as exc:
            raise NotFound("This image's file is missing.") from exc
        image_view_record(
            image=image,
            user=request.user,
            what="preview" if query.validated_data["preview"] else "file",
            request=request._request,
        )
        response = FileResponse(
            handle, content_type="image/png", filename=f"{image.uid.hex}.png"
        )
        # Private data: no shared caches.
        response["Cache-Control"] = "private, max-age=3600"
        return response


class ImageReleaseApi(APIView):
    """Release a quarantined image after looking at it (admins)."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="ImageReleaseInput")
    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(
            max_length=MAX_NOTE,
            help_text="What you checked, e.g. 'no text in the image'; audited.",
        )

    @extend_schema(
        operation_id="images_release",
        request=InputSerializer,
        responses={
            200: FullImageSerializer,
            400: ErrorOutputSerializer,
            404: ErrorOutputSerializer,
        },
        description="Serve a quarantined image from now on. The release, with "
        "the admin's note and the quarantine reason, goes in the audit log.",
    )
    def post(self, request: Request, uid: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        image = get_object_or_404(Image, uid=uid)
        image = image_release(
            image=image,
            actor=request.user,
            note=data.validated_data["note"],
            request=request._request,
        )
        return Response(FullImageSerializer(image).data)
