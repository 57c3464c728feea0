"""Ratings: a physician submits one, and reads back their own."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.rating.queries import round_for_rating
from annotations.rating.submit import MAX_TIME_TAKEN_MS, rating_submit
from medrlhf.fields import IdField
from medrlhf.pagination import LimitOffsetPagination

from ..models import Flag, Rating, Round
from ..permissions import CanSeeRating, IsPhysician
from ..selectors import ratings_of_user
from ..users import signed_in
from .common import ErrorOutputSerializer, OwnTransactionApiView, paginated_response


@extend_schema_serializer(component_name="Rating")
class RatingOutputSerializer(serializers.ModelSerializer):
    """A rating as its rater sees it: no source, model or control flag."""

    image = serializers.UUIDField(source="image.uid", read_only=True)
    prompt = serializers.CharField(source="image.prompt", read_only=True)
    modality = serializers.CharField(source="image.modality", read_only=True)
    round: serializers.PrimaryKeyRelatedField[Round] = (
        serializers.PrimaryKeyRelatedField(read_only=True)
    )
    flags = serializers.ListField(child=serializers.ChoiceField(Flag.choices))

    class Meta:
        model = Rating
        fields = [
            "id",
            "round",
            "image",
            "prompt",
            "modality",
            "score",
            "flags",
            "comment",
            "time_taken_ms",
            "created_at",
            "retracted_at",
        ]
        read_only_fields = fields


_DATETIME = serializers.DateTimeField()


def rating_data(rating: Rating) -> dict[str, Any]:
    """``RatingOutputSerializer``'s output, written out: every submit answers
    with it (bench/hotpath.py); tests/api hold the two to the same shape."""
    return {
        "id": rating.pk,
        "round": rating.round_id,
        "image": str(rating.image.uid),
        "prompt": rating.image.prompt,
        "modality": rating.image.modality,
        "score": rating.score,
        "flags": list(rating.flags),
        "comment": rating.comment,
        "time_taken_ms": rating.time_taken_ms,
        "created_at": _DATETIME.to_representation(rating.created_at),
        "retracted_at": _DATETIME.to_representation(rating.retracted_at)
        if rating.retracted_at
        else None,
    }


class RatingCreateApi(OwnTransactionApiView):
    """Rate an image served to the current physician.

    201 for a new rating; 200 with the same id when the identical rating was
    already recorded (a double submit); 409 when the round is closed, the image
    was not served to this physician, or it is already rated differently.
    """

    permission_classes = [IsAuthenticated, IsPhysician]

    @extend_schema_serializer(component_name="RatingCreateInput")
    class InputSerializer(serializers.Serializer):
        round = IdField()
        image = serializers.UUIDField()
        score = serializers.IntegerField(min_value=1, max_value=3)
        flags = serializers.ListField(
            child=serializers.ChoiceField(Flag.choices),
            required=False,
            default=list,
            max_length=len(Flag.choices),
        )
        comment = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=2000
        )
        time_taken_ms = serializers.IntegerField(
            required=False,
            allow_null=True,
            default=None,
            min_value=0,
            max_value=MAX_TIME_TAKEN_MS,
        )

    @extend_schema(
        operation_id="ratings_create",
        request=InputSerializer,
        responses={
            201: RatingOutputSerializer,
            200: RatingOutputSerializer,
            403: ErrorOutputSerializer,
            404: ErrorOutputSerializer,
            409: ErrorOutputSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        rater = signed_in(request)
        try:
            rnd = round_for_rating(params["round"], rater)
        except Round.DoesNotExist:
            raise Http404("No Round matches the given query.") from None
        rating, created = rating_submit(
            round=rnd,
            rater=rater,
            image_uid=params["image"],
            score=params["score"],
            flags=params["flags"],
            comment=params["comment"],
            time_taken_ms=params["time_taken_ms"],
        )
        return Response(
            rating_data(rating),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class RatingMineApi(APIView):
    """The current user's ratings, newest first, undone ones included."""

    permission_classes = [IsAuthenticated]
    pagination_class = LimitOffsetPagination

    @extend_schema_serializer(component_name="RatingFilter")
    class FilterSerializer(serializers.Serializer):
        round = IdField(required=False)

    @extend_schema(
        operation_id="ratings_mine",
        parameters=[FilterSerializer],
        responses=RatingOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        ratings = ratings_of_user(user=signed_in(request))
        if "round" in query.validated_data:
            ratings = ratings.filter(round_id=query.validated_data["round"])
        return paginated_response(
            serializer_class=RatingOutputSerializer,
            queryset=ratings,
            request=request,
            view=self,
        )


class RatingDetailApi(APIView):
    permission_classes = [IsAuthenticated, CanSeeRating]

    @extend_schema(
        operation_id="ratings_retrieve",
        responses={200: RatingOutputSerializer, 404: ErrorOutputSerializer},
    )
    def get(self, request: Request, rating_id: int) -> Response:
        rating = get_object_or_404(
            Rating.objects.select_related("image", "round"), pk=rating_id
        )
        self.check_object_permissions(request, rating)
        return Response(RatingOutputSerializer(rating).data)
