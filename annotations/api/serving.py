"""The serving design a new round takes, whether its images are chosen or
generated: one set of fields, so both endpoints check it the same way."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from models_ml.models import ModelKind, ModelVersion

from ..design import (
    DEFAULT_RESCORE_EVERY,
    MAX_REPEAT_SHARE,
    MAX_RESCORE_EVERY,
    ServingDesign,
)
from ..models import ServingPolicy
from ..serving_rules import REPEAT_GAP

SERVING_FIELDS = (
    "agreement_share",
    "repeat_share",
    "serving_policy",
    "rescore_every",
    "reward_model_version",
)


class ServingInputSerializer(serializers.Serializer):
    """Fields for ``round_create`` and ``round_generate_start`` alike.

    Ranges are refused here with the field named; the services check them
    again (``ServingDesign.checked``) for every other caller.
    """

    agreement_share = serializers.FloatField(
        min_value=0,
        max_value=1,
        default=0.0,
        help_text="Share of the round's images (controls included) that every "
        "physician rates, not capped by raters_per_image.",
    )
    repeat_share = serializers.FloatField(
        min_value=0,
        max_value=MAX_REPEAT_SHARE,
        default=0.0,
        help_text="Share of each physician's images shown to them again, "
        f"unannounced, at least {REPEAT_GAP} images later.",
    )
    serving_policy = serializers.ChoiceField(
        choices=ServingPolicy.choices, default=ServingPolicy.RANDOM
    )
    rescore_every = serializers.IntegerField(
        min_value=0,
        max_value=MAX_RESCORE_EVERY,
        required=False,
        allow_null=True,
        default=None,
        help_text="Most informative first only: after this many new ratings, "
        "train the reward model on every rating so far and score the round "
        f"again; 0 never. Default {DEFAULT_RESCORE_EVERY} for uncertainty "
        "serving, 0 for random.",
    )
    reward_model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.filter(kind=ModelKind.REWARD),
        required=False,
        allow_null=True,
        default=None,
        help_text="Reward model whose ensemble spread orders uncertainty "
        "serving; its scoring job starts once the round has its images.",
        error_messages={"does_not_exist": "no reward model version with id {pk_value}"},
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (
            attrs["serving_policy"] == ServingPolicy.UNCERTAINTY
            and attrs["reward_model_version"] is None
        ):
            raise serializers.ValidationError(
                {
                    "reward_model_version": "uncertainty serving needs a "
                    "reward model version to score the round's images"
                }
            )
        if attrs.get("rescore_every") and (
            attrs["serving_policy"] != ServingPolicy.UNCERTAINTY
        ):
            raise serializers.ValidationError(
                {
                    "rescore_every": "re-scoring applies to uncertainty serving "
                    "only; leave it out or 0 for random order"
                }
            )
        return attrs


def serving_design(validated: dict[str, Any]) -> ServingDesign:
    """The serving fields of validated input as one ``ServingDesign``."""
    return ServingDesign(**{name: validated[name] for name in SERVING_FIELDS})
