"""Model versions over the API: the list, one version with its files and
rounds, the lineage tree, and registering a model folder already on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.common import ErrorOutputSerializer
from annotations.models import Dataset
from annotations.permissions import (
    IsAdmin,
    IsResearcherOrAdmin,
)
from annotations.users import signed_in
from medrlhf.serverpaths import ServerPathsHidden

from ..models import ModelKind, ModelVersion
from ..selectors import (
    model_version_tree,
    model_versions_list,
)
from ..services.base_training import model_version_register

MAX_FILES_LISTED = 200


class _VersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


def _kind_field() -> serializers.CharField:
    # Plain text: the choice set stays in one component, so its enum name is stable.
    return serializers.CharField(read_only=True, help_text="diffusion or reward")


@extend_schema_serializer(component_name="ModelVersion")
class ModelVersionSerializer(serializers.ModelSerializer):
    kind = _kind_field()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "kind",
            "backend",
            "parent",
            "dataset",
            "rating_count",
            "ratings_until",
            "is_control",
            "gate",
            "job",
            "created_at",
        ]
        read_only_fields = fields


class _FileSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Path relative to the version's folder.")
    size = serializers.IntegerField()


class _RoundRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()


@extend_schema_serializer(component_name="ModelVersionDetail")
class ModelVersionDetailSerializer(ServerPathsHidden, serializers.ModelSerializer):
    kind = _kind_field()
    parent = _VersionRefSerializer(allow_null=True)
    children = _VersionRefSerializer(many=True)
    dataset = _VersionRefSerializer(allow_null=True)
    rounds = _RoundRefSerializer(many=True, source="trained_on_rounds")
    files = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "kind",
            "backend",
            "parent",
            "children",
            "dataset",
            "rounds",
            "rating_count",
            "ratings_until",
            "is_control",
            "gate",
            "params",
            "metrics",
            "path",
            "files",
            "job",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(_FileSerializer(many=True))
    def get_files(self, version: ModelVersion) -> list[dict[str, Any]]:
        return version_files(Path(version.path))


def version_files(folder: Path) -> list[dict[str, Any]]:
    """The first files of a version's folder, with sizes; none when it is gone."""
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        out.append({"name": str(path.relative_to(folder)), "size": path.stat().st_size})
        if len(out) >= MAX_FILES_LISTED:
            break
    return out


@extend_schema_serializer(component_name="LineageNode")
class LineageNodeSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="version.id")
    name = serializers.CharField(source="version.name")
    kind = serializers.CharField(source="version.kind")
    backend = serializers.CharField(source="version.backend")
    dataset = serializers.IntegerField(source="version.dataset_id", allow_null=True)
    rating_count = serializers.IntegerField(source="version.rating_count")
    is_control = serializers.BooleanField(source="version.is_control")
    gate = serializers.CharField(
        source="version.gate",
        help_text="untested, pending (comparison round open), promoted or failed",
    )
    created_at = serializers.DateTimeField(source="version.created_at")


# A node's children are nodes: declared after the class so it can name itself.
LineageNodeSerializer._declared_fields["children"] = LineageNodeSerializer(many=True)


class _KindFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(ModelKind.choices, required=False)


class ModelVersionListApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        operation_id="model_versions_list",
        parameters=[_KindFilterSerializer],
        responses=ModelVersionSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = _KindFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        versions = model_versions_list(kind=query.validated_data.get("kind"))
        return Response(ModelVersionSerializer(versions, many=True).data)


class ModelVersionDetailApi(APIView):
    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        operation_id="model_versions_retrieve",
        responses={200: ModelVersionDetailSerializer, 404: ErrorOutputSerializer},
    )
    def get(self, request: Request, version_id: int) -> Response:
        version = get_object_or_404(
            model_versions_list().prefetch_related("children", "trained_on_rounds"),
            pk=version_id,
        )
        return Response(
            ModelVersionDetailSerializer(version, context={"request": request}).data
        )


class ModelVersionTreeApi(APIView):
    """Every version as a forest: roots, each with its children nested."""

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        operation_id="model_versions_tree",
        parameters=[_KindFilterSerializer],
        responses=LineageNodeSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = _KindFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        roots = model_version_tree(kind=query.validated_data.get("kind"))
        return Response(LineageNodeSerializer(roots, many=True).data)


def register_roots() -> list[Path]:
    """Folders a version may be adopted from: MODELS_DIR and the import roots."""
    roots = [Path(settings.MODELS_DIR), *map(Path, settings.IMPORT_ROOTS)]
    return [r.resolve() for r in roots]


class ModelVersionRegisterApi(APIView):
    """Adopt a model folder already on the server (under MODELS_DIR or an
    import root) as a version, without training it."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="ModelVersionRegisterInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        kind = serializers.ChoiceField(ModelKind.choices)
        path = serializers.CharField(
            max_length=1000, help_text="A model folder under MODELS_DIR."
        )
        dataset = serializers.PrimaryKeyRelatedField(
            queryset=Dataset.objects.all(), required=False, allow_null=True
        )
        # A declared field (DRF's metaclass moves it off the class); the stubs
        # see Field's own ``parent`` attribute.
        parent = serializers.PrimaryKeyRelatedField(  # type: ignore[assignment]
            queryset=ModelVersion.objects.all(), required=False, allow_null=True
        )

        def validate_path(self, value: str) -> str:
            folder = Path(value).resolve()
            if not any(folder.is_relative_to(root) for root in register_roots()):
                raise serializers.ValidationError(
                    f"{value} is not under MODELS_DIR or an import root"
                )
            if not folder.is_dir():
                raise serializers.ValidationError(f"{value} is not a folder")
            return str(folder)

    @extend_schema(
        operation_id="model_versions_register",
        request=InputSerializer,
        responses={201: ModelVersionDetailSerializer, 400: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = model_version_register(
            created_by=signed_in(request), **data.validated_data
        )
        return Response(
            ModelVersionDetailSerializer(version, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )
