"""Rounds: list, create, detail, open and close, and a physician's rating flow."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.rating.queries import round_for_rating
from annotations.rating.serving import assignment_next, assignment_skip
from annotations.rating.submit import rating_undo
from medrlhf.pagination import LimitOffsetPagination

from ..errors import NotServed
from ..models import Dataset, Image, Role, Round
from ..permissions import CanRateRound, CanSeeRound, IsAdmin, IsPhysician
from ..presentation import DISPLAY_SIZE_MAX, DISPLAY_SIZE_MIN, round_presentation
from ..roles import is_admin, is_researcher
from ..selectors import (
    RoundProgress,
    control_pool,
    round_progress,
    rounds_visible_to,
)
from ..services.rounds import round_close, round_create, round_open
from ..users import AnyUser, signed_in
from ..views.images import display_response
from .common import ErrorOutputSerializer, OwnTransactionApiView, paginated_response
from .serving import ServingInputSerializer, serving_design


class RoundProgressSerializer(serializers.Serializer):
    total_items = serializers.IntegerField()
    needed = serializers.IntegerField(help_text="Ratings the round needs in all.")
    done = serializers.IntegerField()
    percent = serializers.IntegerField()
    mine = serializers.IntegerField(help_text="Live ratings of the current user.")
    my_remaining = serializers.IntegerField()
    my_percent = serializers.IntegerField()


class RoundStaffSerializer(serializers.ModelSerializer):
    """Admins and researchers see how a round is made."""

    created_by = serializers.CharField(
        source="created_by.username", default=None, read_only=True
    )

    class Meta:
        model = Round
        fields = [
            "id",
            "name",
            "description",
            "status",
            "raters_per_image",
            "control_share",
            "agreement_share",
            "repeat_share",
            "serving_policy",
            "rescore_every",
            "display_size",
            "reward_model_version",
            "raters",
            "model_version",
            "compare_model_version",
            "settings",
            "created_by",
            "created_at",
            "opened_at",
            "closed_at",
        ]
        read_only_fields = fields


class RoundPhysicianSerializer(serializers.ModelSerializer):
    """Physicians are blinded to models and controls."""

    class Meta:
        model = Round
        fields = ["id", "name", "description", "status"]
        read_only_fields = fields


def _round_serializer(user: AnyUser) -> type[serializers.ModelSerializer]:
    if is_admin(user) or is_researcher(user):
        return RoundStaffSerializer
    return RoundPhysicianSerializer


def round_detail_data(*, round: Round, user: AnyUser) -> dict[str, Any]:
    data = dict(_round_serializer(user)(round).data)
    data["progress"] = RoundProgressSerializer(
        round_progress(round=round, user=user)
    ).data
    return data


class RoundStaffDetailSerializer(RoundStaffSerializer):
    progress = RoundProgressSerializer()

    class Meta(RoundStaffSerializer.Meta):
        fields = [*RoundStaffSerializer.Meta.fields, "progress"]
        read_only_fields = fields


class RoundPhysicianDetailSerializer(RoundPhysicianSerializer):
    progress = RoundProgressSerializer()

    class Meta(RoundPhysicianSerializer.Meta):
        fields = [*RoundPhysicianSerializer.Meta.fields, "progress"]
        read_only_fields = fields


RoundDetailSchema = PolymorphicProxySerializer(
    component_name="RoundDetail",
    serializers=[RoundStaffDetailSerializer, RoundPhysicianDetailSerializer],
    resource_type_field_name=None,
)


def _images_for_round(
    *,
    dataset: Dataset | None,
    modality: str,
    image_uids: list[uuid.UUID],
) -> QuerySet[Image]:
    qs = Image.objects.filter(quarantined=False)
    if dataset is not None:
        qs = qs.filter(dataset=dataset)
    if modality:
        qs = qs.filter(modality=modality)
    if image_uids:
        qs = qs.filter(uid__in=image_uids)
    return qs


class RoundsApi(APIView):
    """``GET`` lists the rounds the user may see; ``POST`` (admins) creates one."""

    pagination_class = LimitOffsetPagination

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsAuthenticated(), IsAdmin()]
        return [IsAuthenticated()]

    @extend_schema_serializer(component_name="RoundCreateInput")
    class CreateInputSerializer(ServingInputSerializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(
            required=False, default="", allow_blank=True
        )
        dataset = serializers.PrimaryKeyRelatedField(
            queryset=Dataset.objects.all(),
            required=False,
            allow_null=True,
            default=None,
        )
        modality = serializers.CharField(
            max_length=64, required=False, default="", allow_blank=True
        )
        image_uids = serializers.ListField(
            child=serializers.UUIDField(),
            required=False,
            default=list,
            max_length=100_000,
        )
        raters_per_image = serializers.IntegerField(
            min_value=1, max_value=50, default=1
        )
        control_share = serializers.FloatField(min_value=0, max_value=0.99, default=0.0)
        raters = serializers.PrimaryKeyRelatedField(
            queryset=get_user_model().objects.filter(
                groups__name=Role.PHYSICIAN, is_active=True
            ),
            many=True,
            required=False,
            default=list,
            help_text="Physicians who may rate; empty means every physician.",
        )
        open_now = serializers.BooleanField(default=False)
        display_size = serializers.IntegerField(
            min_value=DISPLAY_SIZE_MIN,
            max_value=DISPLAY_SIZE_MAX,
            required=False,
            allow_null=True,
            default=None,
            help_text="Side in pixels every image of the round is shown at; "
            "null: the smallest generator resolution in the round (256 for "
            "real images only). Larger than a generator's images is refused.",
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            attrs = super().validate(attrs)
            if not (attrs["dataset"] or attrs["modality"] or attrs["image_uids"]):
                raise serializers.ValidationError(
                    "choose the round's images by dataset, modality or image_uids"
                )
            uids = set(attrs["image_uids"])
            if uids:
                found = set(
                    Image.objects.filter(uid__in=uids).values_list("uid", flat=True)
                )
                missing = sorted(str(u) for u in uids - found)
                if missing:
                    raise serializers.ValidationError(
                        {"image_uids": f"no image with uid {', '.join(missing[:10])}"}
                    )
            return attrs

    @extend_schema(
        operation_id="rounds_list",
        responses=PolymorphicProxySerializer(
            component_name="RoundSummary",
            serializers=[RoundStaffSerializer, RoundPhysicianSerializer],
            resource_type_field_name=None,
            many=True,
        ),
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            serializer_class=_round_serializer(request.user),
            queryset=rounds_visible_to(request.user).prefetch_related("raters"),
            request=request,
            view=self,
        )

    @extend_schema(
        operation_id="rounds_create",
        request=CreateInputSerializer,
        responses={201: RoundStaffDetailSerializer, 400: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.CreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        images = _images_for_round(
            dataset=params["dataset"],
            modality=params["modality"],
            image_uids=params["image_uids"],
        )
        controls: Iterable[Image] = ()
        if params["control_share"] > 0:
            controls = control_pool(
                modalities=set(images.values_list("modality", flat=True))
            )
        rnd = round_create(
            name=params["name"],
            description=params["description"],
            images=list(images),
            created_by=signed_in(request),
            raters_per_image=params["raters_per_image"],
            control_share=params["control_share"],
            control_pool=controls,
            raters=params["raters"],
            open_now=params["open_now"],
            display_size=params["display_size"],
            serving=serving_design(params),
        )
        # round_create returns the row as created, before open_now opened it.
        rnd.refresh_from_db()
        return Response(
            round_detail_data(round=rnd, user=request.user),
            status=status.HTTP_201_CREATED,
        )


class RoundDetailApi(APIView):
    permission_classes = [IsAuthenticated, CanSeeRound]

    @extend_schema(
        operation_id="rounds_retrieve",
        responses={200: RoundDetailSchema, 404: ErrorOutputSerializer},
    )
    def get(self, request: Request, round_id: int) -> Response:
        rnd = get_object_or_404(Round, pk=round_id)
        self.check_object_permissions(request, rnd)
        return Response(round_detail_data(round=rnd, user=request.user))


class RoundOpenApi(APIView):
    permission_classes = [IsAuthenticated, IsAdmin, CanSeeRound]

    @extend_schema(
        operation_id="rounds_open",
        request=None,
        responses={200: RoundStaffDetailSerializer, 409: ErrorOutputSerializer},
    )
    def post(self, request: Request, round_id: int) -> Response:
        rnd = get_object_or_404(Round, pk=round_id)
        self.check_object_permissions(request, rnd)
        rnd = round_open(round=rnd, actor=signed_in(request))
        return Response(round_detail_data(round=rnd, user=request.user))


class RoundCloseApi(APIView):
    permission_classes = [IsAuthenticated, IsAdmin, CanSeeRound]

    @extend_schema(
        operation_id="rounds_close",
        request=None,
        responses={200: RoundStaffDetailSerializer},
    )
    def post(self, request: Request, round_id: int) -> Response:
        rnd = get_object_or_404(Round, pk=round_id)
        self.check_object_permissions(request, rnd)
        rnd = round_close(round=rnd, actor=signed_in(request))
        return Response(round_detail_data(round=rnd, user=request.user))


def _rated_round(*, request: Request, view: APIView, round_id: int) -> Round:
    # The row carries the rater check, so CanRateRound asks no second query.
    try:
        rnd = round_for_rating(round_id, signed_in(request))
    except Round.DoesNotExist:
        raise Http404("No Round matches the given query.") from None
    view.check_object_permissions(request, rnd)
    return rnd


_DATETIME = serializers.DateTimeField()


def progress_data(progress: RoundProgress) -> dict[str, int]:
    """``RoundProgressSerializer``'s output, without a serializer per request."""
    return {
        "total_items": progress.total_items,
        "needed": progress.needed,
        "done": progress.done,
        "percent": progress.percent,
        "mine": progress.mine,
        "my_remaining": progress.my_remaining,
        "my_percent": progress.my_percent,
    }


class RoundNextApi(OwnTransactionApiView):
    """The image the current physician should rate next; 204 when none is left."""

    permission_classes = [IsAuthenticated, IsPhysician, CanRateRound]

    @extend_schema_serializer(component_name="NextImage")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="ServedImage")
        class ImageSerializer(serializers.Serializer):
            uid = serializers.UUIDField()
            prompt = serializers.CharField()
            modality = serializers.CharField()
            file_url = serializers.CharField(
                help_text="The image as this round shows every image: "
                "width x height, PNG, no metadata."
            )
            width = serializers.IntegerField(help_text="The round's display size.")
            height = serializers.IntegerField()
            channels = serializers.IntegerField(help_text="1 (grayscale) or 3 (RGB)")
            bit_depth = serializers.IntegerField(help_text="16 grayscale, 8 colour")
            value_unit = serializers.CharField(
                help_text='"HU" for CT, "" (relative intensity) otherwise'
            )
            value_offset = serializers.FloatField(
                help_text="value = value_offset + value_step x pixel"
            )
            value_step = serializers.FloatField()

        round = serializers.IntegerField()
        image = ImageSerializer()
        served_at = serializers.DateTimeField()
        progress = RoundProgressSerializer()

    @extend_schema(
        operation_id="rounds_next",
        responses={
            200: OutputSerializer,
            204: None,
            404: ErrorOutputSerializer,
            409: ErrorOutputSerializer,
        },
    )
    def get(self, request: Request, round_id: int) -> Response:
        rnd = _rated_round(request=request, view=self, round_id=round_id)
        rater = signed_in(request)
        assignment = assignment_next(round=rnd, rater=rater)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        # Written out rather than serialized: this answers every image a
        # physician sees (bench/hotpath.py); OutputSerializer documents it
        # and tests/api hold the two to the same shape.
        image = assignment.round_image.image
        file_url = reverse(
            "api-round-image", kwargs={"round_id": rnd.pk, "uid": image.uid}
        )
        return Response(
            {
                "round": rnd.pk,
                "image": {
                    "uid": str(image.uid),
                    "prompt": image.prompt,
                    "modality": image.modality,
                    "file_url": file_url,
                    **round_presentation(rnd, image.modality).fields(),
                },
                "served_at": _DATETIME.to_representation(assignment.served_at),
                "progress": progress_data(round_progress(round=rnd, user=rater)),
            }
        )


class RoundImageApi(APIView):
    """An image of the round as the round shows every image (physicians: one
    served to them)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="rounds_image",
        responses={
            (200, "image/png"): OpenApiTypes.BINARY,
            (404, "application/json"): ErrorOutputSerializer,
        },
    )
    def get(self, request: Request, round_id: int, uid: uuid.UUID) -> HttpResponse:
        rnd = get_object_or_404(Round, pk=round_id)
        return display_response(request=request._request, round=rnd, uid=uid)


class RoundSkipApi(APIView):
    permission_classes = [IsAuthenticated, IsPhysician, CanRateRound]

    @extend_schema_serializer(component_name="RoundSkipInput")
    class InputSerializer(serializers.Serializer):
        image = serializers.UUIDField(help_text="uid of the image being skipped")

    @extend_schema(
        operation_id="rounds_skip",
        request=InputSerializer,
        responses={204: None, 409: ErrorOutputSerializer},
    )
    def post(self, request: Request, round_id: int) -> Response:
        rnd = _rated_round(request=request, view=self, round_id=round_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        image = Image.objects.filter(uid=data.validated_data["image"]).first()
        if image is None:
            raise NotServed("this image is not waiting for your rating")
        assignment_skip(round=rnd, rater=signed_in(request), image=image)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoundUndoApi(APIView):
    """Retract the current physician's last rating in this round."""

    permission_classes = [IsAuthenticated, IsPhysician, CanRateRound]

    @extend_schema_serializer(component_name="UndoneRating")
    class OutputSerializer(serializers.Serializer):
        rating = serializers.IntegerField()
        image = serializers.UUIDField()
        retracted_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="rounds_undo",
        request=None,
        responses={200: OutputSerializer, 409: ErrorOutputSerializer},
    )
    def post(self, request: Request, round_id: int) -> Response:
        rnd = _rated_round(request=request, view=self, round_id=round_id)
        rating = rating_undo(round=rnd, rater=signed_in(request))
        out = self.OutputSerializer(
            {
                "rating": rating.pk,
                "image": rating.image.uid,
                "retracted_at": rating.retracted_at,
            }
        )
        return Response(out.data)
