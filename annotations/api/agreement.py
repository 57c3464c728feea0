"""Rater-science figures of a round as JSON: the agreement page's numbers."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from medrlhf.fields import IdField
from models_ml.models import ModelKind, ModelVersion

from ..models import Round
from ..permissions import IsResearcherOrAdmin
from ..rater_report import agreement_report, reward_ceiling_report
from ..rater_selectors import round_modalities, round_model_versions
from ..stats.agreement import DEFAULT_N_BOOT
from .common import ErrorOutputSerializer

MAX_N_BOOT = 5000

# --- output pieces --------------------------------------------------------------


@extend_schema_serializer(component_name="AgreementEstimate")
class EstimateSerializer(serializers.Serializer):
    value = serializers.FloatField(
        allow_null=True, help_text="Null when undefined; see note."
    )
    n = serializers.IntegerField(help_text="Items (images) the value rests on.")
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    level = serializers.FloatField(help_text="Confidence level of the interval.")
    n_boot = serializers.IntegerField(
        help_text="Bootstrap resamples; 0 for an analytic or no interval."
    )
    note = serializers.CharField(allow_blank=True)


@extend_schema_serializer(component_name="AgreementModalityAlpha")
class ModalityAlphaSerializer(EstimateSerializer):
    modality = serializers.CharField()


@extend_schema_serializer(component_name="AgreementRef")
class RefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class CountsSerializer(serializers.Serializer):
    ratings = serializers.IntegerField()
    first_ratings = serializers.IntegerField()
    repeats = serializers.IntegerField()
    physicians = serializers.IntegerField()
    images = serializers.IntegerField()
    real_controls = serializers.IntegerField()
    images_in_scope = serializers.IntegerField()


class FiltersSerializer(serializers.Serializer):
    modality = serializers.CharField(allow_null=True)
    model_version = RefSerializer(allow_null=True)


class BootstrapSerializer(serializers.Serializer):
    n_boot = serializers.IntegerField()
    seed = serializers.IntegerField()


class KappaMatrixSerializer(serializers.Serializer):
    raters = serializers.ListField(child=serializers.CharField())
    kappa = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="Quadratic kappa per pair; null on the diagonal and when undefined.",
    )
    n = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="Common images per pair; the diagonal holds each rater's count.",
    )


class ReliabilitySerializer(serializers.Serializer):
    rater = serializers.CharField()
    kappa = serializers.FloatField(
        allow_null=True, help_text="Item-weighted mean kappa with colleagues."
    )
    n_pairs = serializers.IntegerField()
    n_items = serializers.IntegerField()


class RetestSerializer(serializers.Serializer):
    rater = serializers.CharField()
    n = serializers.IntegerField()
    kappa = EstimateSerializer()
    exact_agreement = EstimateSerializer()
    mean_abs_difference = serializers.FloatField(allow_null=True)
    changes = serializers.DictField(child=serializers.IntegerField())


class ScoreSummarySerializer(serializers.Serializer):
    n = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    mean = EstimateSerializer()


class TuringSerializer(serializers.Serializer):
    group = serializers.CharField(help_text="Physician or modality.")
    real = ScoreSummarySerializer()
    synthetic = ScoreSummarySerializer()
    p_synthetic_at_least_real = EstimateSerializer(
        help_text="P(S > R) + P(S = R) / 2; 0.5 means rated alike."
    )


class DriftBinSerializer(serializers.Serializer):
    first = serializers.IntegerField()
    last = serializers.IntegerField()
    n = serializers.IntegerField()
    mean = serializers.FloatField()


class DriftSerializer(serializers.Serializer):
    n = serializers.IntegerField()
    slope_per_item = EstimateSerializer()
    intercept = serializers.FloatField(allow_null=True)
    bins = DriftBinSerializer(many=True)


class PaceSerializer(serializers.Serializer):
    rater = serializers.CharField()
    n = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True)
    score_slope_per_item = EstimateSerializer()
    seconds_slope_per_item = EstimateSerializer()


class CeilingRowSerializer(serializers.Serializer):
    rater = serializers.CharField()
    model_kappa = EstimateSerializer()
    model_spearman = EstimateSerializer()
    human_kappa = serializers.FloatField(allow_null=True)
    human_spearman = serializers.FloatField(allow_null=True)
    n_colleagues = serializers.IntegerField()


class RoundIdSerializer(serializers.Serializer):
    id = serializers.IntegerField()


# --- input -----------------------------------------------------------------------


class _FilterInput(serializers.Serializer):
    modality = serializers.CharField(required=False, allow_blank=True, default="")
    model_version = IdField(
        required=False,
        allow_null=True,
        default=None,
        help_text="A diffusion version with images in the round; real controls stay.",
    )
    n_boot = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_N_BOOT, default=DEFAULT_N_BOOT
    )
    seed = serializers.IntegerField(required=False, min_value=0, default=0)

    def validate_modality(self, value: str) -> str:
        if value and value not in round_modalities(round=self.context["round"]):
            raise serializers.ValidationError(f"no {value!r} image in this round")
        return value

    def validate_model_version(self, value: int | None) -> ModelVersion | None:
        if value is None:
            return None
        for version in round_model_versions(round=self.context["round"]):
            if version.pk == value:
                return version
        raise serializers.ValidationError(
            f"model version {value} made no image of this round"
        )


def _validated(
    serializer_class: type[serializers.Serializer], request: Request, rnd: Round
) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params, context={"round": rnd})
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    data["modality"] = data["modality"] or None
    return data


ERRORS = {
    400: ErrorOutputSerializer,
    403: ErrorOutputSerializer,
    404: ErrorOutputSerializer,
}


class RoundAgreementApi(APIView):
    """Agreement between physicians, test-retest, visual Turing test and drift."""

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema_serializer(component_name="RoundAgreementQuery")
    class InputSerializer(_FilterInput):
        pass

    @extend_schema_serializer(component_name="RoundAgreement")
    class OutputSerializer(serializers.Serializer):
        round = RefSerializer()
        filters = FiltersSerializer()
        scope = serializers.CharField(
            help_text="Agreement set, or every image rated by two or more."
        )
        counts = CountsSerializer()
        bootstrap = BootstrapSerializer()
        alpha = EstimateSerializer(help_text="Krippendorff's alpha, ordinal.")
        alpha_by_modality = ModalityAlphaSerializer(many=True)
        kappa_matrix = KappaMatrixSerializer()
        reliability = ReliabilitySerializer(many=True)
        retest = RetestSerializer(many=True)
        turing_by_physician = TuringSerializer(many=True)
        turing_by_modality = TuringSerializer(many=True)
        score_drift = DriftSerializer()
        time_drift = DriftSerializer()
        pace = PaceSerializer(many=True)

    @extend_schema(
        parameters=[InputSerializer],
        responses={200: OutputSerializer, **ERRORS},
        summary="Rater agreement figures of a round",
    )
    def get(self, request: Request, round_id: int) -> Response:
        rnd = get_object_or_404(Round, pk=round_id)
        data = _validated(self.InputSerializer, request, rnd)
        report = agreement_report(round=rnd, **data)
        return Response(self.OutputSerializer(report.as_dict()).data)


class RoundAgreementRewardApi(APIView):
    """A reward model's agreement with each physician beside the human ceiling."""

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema_serializer(component_name="RoundAgreementRewardQuery")
    class InputSerializer(_FilterInput):
        reward_model = serializers.IntegerField(
            required=False,
            min_value=1,
            allow_null=True,
            default=None,
            help_text="Defaults to the round's reward model, else the newest "
            "that scored the round.",
        )

        def validate_reward_model(self, value: int | None) -> ModelVersion | None:
            if value is None:
                return None
            version = ModelVersion.objects.filter(pk=value).first()
            if version is None or version.kind != ModelKind.REWARD:
                raise serializers.ValidationError(f"{value} is not a reward model")
            return version

    @extend_schema_serializer(component_name="RoundAgreementReward")
    class OutputSerializer(serializers.Serializer):
        round = RoundIdSerializer()
        reward_model = RefSerializer(allow_null=True)
        reward_models = RefSerializer(many=True)
        scope = serializers.CharField()
        n_items = serializers.IntegerField()
        n_scored = serializers.IntegerField()
        n_missing = serializers.IntegerField()
        note = serializers.CharField(
            allow_blank=True, help_text="Why scores are missing and how to get them."
        )
        model_mean_kappa = serializers.FloatField(allow_null=True)
        human_mean_kappa = serializers.FloatField(allow_null=True)
        rows = CeilingRowSerializer(many=True)

    @extend_schema(
        parameters=[InputSerializer],
        responses={200: OutputSerializer, **ERRORS},
        summary="Reward model against the physicians' agreement",
    )
    def get(self, request: Request, round_id: int) -> Response:
        rnd = get_object_or_404(Round, pk=round_id)
        data = _validated(self.InputSerializer, request, rnd)
        report = reward_ceiling_report(round=rnd, **data)
        return Response(self.OutputSerializer(report.as_dict()).data)
