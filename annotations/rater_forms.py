"""The agreement page's filter: modality, diffusion version and reward model."""

from __future__ import annotations

from typing import Any

from django import forms

from models_ml.models import ModelKind, ModelVersion

from .models import Round
from .rater_selectors import round_modalities, round_model_versions


class AgreementFilterForm(forms.Form):
    modality = forms.ChoiceField(required=False, label="Modality")
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        empty_label="All model versions",
        label="Model version",
        help_text="Keeps that version's images and the real controls.",
    )
    reward_model = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        empty_label="Round's reward model (or latest that scored it)",
        label="Reward model",
    )

    def __init__(self, *args: Any, round: Round, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        modality = self.fields["modality"]
        model_version = self.fields["model_version"]
        reward_model = self.fields["reward_model"]
        assert isinstance(modality, forms.ChoiceField)
        assert isinstance(model_version, forms.ModelChoiceField)
        assert isinstance(reward_model, forms.ModelChoiceField)
        modality.choices = [("", "All modalities")] + [
            (m, m) for m in round_modalities(round=round)
        ]
        versions = [v.pk for v in round_model_versions(round=round)]
        model_version.queryset = ModelVersion.objects.filter(pk__in=versions).order_by(
            "created_at", "pk"
        )
        reward_model.queryset = ModelVersion.objects.filter(
            kind=ModelKind.REWARD
        ).order_by("-created_at", "-pk")
