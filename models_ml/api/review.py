"""Closing the loop over the API: review a version's reward-scored generations
at a threshold, send a selection to physicians as a round, and abandon or
retry a round whose generation failed.  Admins only."""

from __future__ import annotations

from typing import Any, cast

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.common import ErrorOutputSerializer
from annotations.api.rounds import RoundStaffDetailSerializer, round_detail_data
from annotations.models import Image, Round
from annotations.permissions import (
    CanSeeRound,
    IsAdmin,
)
from annotations.users import signed_in
from medrlhf.pagination import LimitOffsetPagination

from ..generate_files import (
    provenance_row,
)
from ..selectors import (
    REVIEW_SHOW,
    ReviewFilter,
    review_counts,
    review_default_threshold,
    review_images,
    review_page_images,
)
from ..services.review import review_round_create
from ..services.rounds import round_abandon, round_generation_retry
from .common import (
    ImageProvenanceSerializer,
    JobQueuedSerializer,
    diffusion_versions,
    queued,
)


class _ReviewFilterSerializer(serializers.Serializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=diffusion_versions())
    threshold = serializers.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        allow_null=True,
        default=None,
        help_text="Reward at or above: kept. Omit for the newest reward model's "
        "calibrated threshold (else 0.5).",
    )
    modality = serializers.CharField(
        max_length=64, required=False, default="", allow_blank=True
    )
    unused_only = serializers.BooleanField(
        default=False, help_text="Leave out images already in a round."
    )

    def review(self, show: str = "all") -> ReviewFilter:
        data = self.validated_data
        threshold = data["threshold"]
        return ReviewFilter(
            model_version=data["model_version"],
            threshold=review_default_threshold() if threshold is None else threshold,
            show=show,
            modality=data["modality"],
            unused_only=data["unused_only"],
        )


@extend_schema_serializer(component_name="ReviewFilter")
class ReviewQuerySerializer(_ReviewFilterSerializer):
    show = serializers.ChoiceField(REVIEW_SHOW, default="all")


@extend_schema_serializer(component_name="ReviewCounts")
class ReviewCountsSerializer(serializers.Serializer):
    kept = serializers.IntegerField()
    rejected = serializers.IntegerField()
    total = serializers.IntegerField(help_text="Scored images, kept and rejected.")
    unscored = serializers.IntegerField(
        help_text="Generated images of the version without a reward score."
    )


@extend_schema_serializer(component_name="ReviewImage")
class ReviewImageSerializer(ImageProvenanceSerializer):
    uid = serializers.CharField()
    kept = serializers.BooleanField(help_text="Reward at or above the threshold.")
    reward_score = serializers.FloatField()
    job_id = serializers.IntegerField(allow_null=True)
    round_id = serializers.IntegerField(
        allow_null=True, help_text="The generated round the image was made for."
    )
    created_at = serializers.CharField()
    file_url = serializers.CharField()


@extend_schema_serializer(component_name="ReviewPage")
class ReviewPageSerializer(serializers.Serializer):
    threshold = serializers.FloatField()
    counts = ReviewCountsSerializer()
    count = serializers.IntegerField(help_text="Images matching ``show``.")
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = ReviewImageSerializer(many=True)


def _review_row(image: Image, *, threshold: float) -> dict[str, Any]:
    row = provenance_row(image)
    # Every review image carries a score (``review_scored_images``).
    row["kept"] = cast(float, image.reward_score) >= threshold
    row["round_id"] = image.generated_for_round_id
    row["file_url"] = reverse("api-image-file", kwargs={"uid": image.uid})
    return row


class ReviewImagesApi(APIView):
    """A diffusion version's reward-scored generations (from generate jobs and
    generated rounds), best first, split at a threshold; paginated."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        operation_id="review_images",
        parameters=[ReviewQuerySerializer],
        responses={200: ReviewPageSerializer, 400: ErrorOutputSerializer},
    )
    def get(self, request: Request) -> Response:
        query = ReviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        review = query.review(show=query.validated_data["show"])
        counts = review_counts(review=review)
        paginator = LimitOffsetPagination()
        ids = paginator.paginate_queryset(
            review_images(review=review).values_list("id", flat=True),
            request,
            view=self,
        )
        page = review_page_images(review=review, ids=ids)
        data = {
            "threshold": review.threshold,
            "counts": counts,
            "count": paginator.count,
            "next": paginator.get_next_link(),
            "previous": paginator.get_previous_link(),
            "results": [_review_row(im, threshold=review.threshold) for im in page],
        }
        return Response(ReviewPageSerializer(data).data)


class ReviewRoundCreateApi(APIView):
    """Open a rating round on picked images of a review, or on every image
    kept at the threshold; the round's settings record where it came from."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema_serializer(component_name="ReviewRoundInput")
    class InputSerializer(_ReviewFilterSerializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(
            required=False, default="", allow_blank=True
        )
        image_uids = serializers.ListField(
            child=serializers.UUIDField(),
            required=False,
            default=list,
            max_length=100_000,
            help_text="Images to rate; or set all_kept.",
        )
        all_kept = serializers.BooleanField(
            default=False, help_text="Every image kept at the threshold."
        )
        raters_per_image = serializers.IntegerField(
            min_value=1, max_value=50, default=1
        )
        control_share = serializers.FloatField(min_value=0, max_value=0.9, default=0.0)
        open_now = serializers.BooleanField(default=True)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs["all_kept"] == bool(attrs["image_uids"]):
                raise serializers.ValidationError(
                    {"image_uids": "give image_uids or all_kept, exactly one"}
                )
            return attrs

    @extend_schema(
        operation_id="review_round_create",
        request=InputSerializer,
        responses={201: RoundStaffDetailSerializer, 400: ErrorOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        p = data.validated_data
        rnd = review_round_create(
            name=p["name"],
            description=p["description"],
            review=data.review(),
            created_by=signed_in(request),
            image_uids=p["image_uids"] or None,
            all_kept=p["all_kept"],
            raters_per_image=p["raters_per_image"],
            control_share=p["control_share"],
            open_now=p["open_now"],
        )
        return Response(
            round_detail_data(round=rnd, user=request.user),
            status=status.HTTP_201_CREATED,
        )


def _admin_round(*, request: Request, view: APIView, round_id: int) -> Round:
    rnd = get_object_or_404(Round, pk=round_id)
    view.check_object_permissions(request, rnd)
    return rnd


class RoundAbandonApi(APIView):
    """Close a round nobody has rated, with a reason: a generation that failed
    or a round not wanted after all.  A rated round is refused (409)."""

    permission_classes = [IsAuthenticated, IsAdmin, CanSeeRound]

    @extend_schema_serializer(component_name="RoundAbandonInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=500)

    @extend_schema(
        operation_id="rounds_abandon",
        request=InputSerializer,
        responses={
            200: RoundStaffDetailSerializer,
            400: ErrorOutputSerializer,
            404: ErrorOutputSerializer,
            409: ErrorOutputSerializer,
        },
    )
    def post(self, request: Request, round_id: int) -> Response:
        rnd = _admin_round(request=request, view=self, round_id=round_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rnd = round_abandon(
            round=rnd, reason=data.validated_data["reason"], actor=signed_in(request)
        )
        return Response(round_detail_data(round=rnd, user=request.user))


class RoundGenerationRetryApi(APIView):
    """Queue a round's failed or cancelled generation again; images the failed
    attempt stored are kept and not made twice."""

    permission_classes = [IsAuthenticated, IsAdmin, CanSeeRound]

    @extend_schema_serializer(component_name="RoundRetryQueued")
    class OutputSerializer(JobQueuedSerializer):
        round = serializers.IntegerField()

    @extend_schema(
        operation_id="rounds_retry_generation",
        request=None,
        responses={
            202: OutputSerializer,
            404: ErrorOutputSerializer,
            409: ErrorOutputSerializer,
        },
    )
    def post(self, request: Request, round_id: int) -> Response:
        rnd = _admin_round(request=request, view=self, round_id=round_id)
        job = round_generation_retry(round=rnd, actor=signed_in(request))
        return queued(job, round=rnd.pk)
