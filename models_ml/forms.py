"""Forms of the ML pages: they validate input; ``models_ml/services/`` does the work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from django import forms
from django.db.models import QuerySet

from annotations.errors import DomainError
from annotations.forms import RoundServingForm
from annotations.models import Dataset
from models_ml.engine.readers import InvalidModalityError, normalize_modality

from .models import ModelKind, ModelVersion
from .services.params import DEFAULT_BEST_OF_N, DEFAULT_OBJECTIVE, GENERATE_MODES
from .services.prompts import prompts_parse

# What the objectives did in the simulated-physician experiment, for the form.
OBJECTIVE_HELP = (
    "How the new version learns from the ratings. DPO is the default: in the "
    "simulated-physician experiment it beat its no-feedback control at every "
    "reported seed, by 5 to 8 points (docs/retraining.md). It needs a "
    "physician to have rated images of one prompt differently. Whichever you "
    "choose, the comparison round decides whether it is promoted."
)


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} · #{obj.pk} · {obj.created_at:%Y-%m-%d %H:%M}"


def _versions(kind: str) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(kind=kind).order_by("-created_at", "-id")


def _version_field(form: forms.Form, name: str) -> VersionChoiceField:
    """One of the form's declared version fields (``form.fields`` types every
    field as a plain ``Field``)."""
    return cast(VersionChoiceField, form.fields[name])


def _clean_modality(raw: str) -> str:
    try:
        return normalize_modality(raw)
    except InvalidModalityError as exc:
        raise forms.ValidationError(str(exc)) from exc


class GenerateForm(forms.Form):
    """Reward-filtered generation. The version defaults to the latest promoted
    one (``default_diffusion_version``), the reward model to the newest; with
    no reward model the images come unfiltered."""

    prompt = forms.CharField(max_length=1000, widget=forms.Textarea(attrs={"rows": 3}))
    modality = forms.CharField(max_length=64, help_text="e.g. fundus, ct, oct")
    count = forms.IntegerField(min_value=1, max_value=64, initial=4)
    mode = forms.ChoiceField(
        label="Filter",
        choices=[
            ("best_of_n", "Best of N: keep the highest reward of N tries"),
            ("threshold", "Threshold: keep images above a reward"),
            ("none", "None: keep every image"),
        ],
        initial="best_of_n",
        widget=forms.RadioSelect,
    )
    n = forms.IntegerField(label="N", min_value=1, max_value=64, initial=4)
    threshold = forms.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        help_text="Blank: the reward model's calibrated threshold.",
    )
    model_version = VersionChoiceField(
        queryset=_versions(ModelKind.DIFFUSION), empty_label=None
    )
    reward_version = VersionChoiceField(
        label="Reward model",
        queryset=_versions(ModelKind.REWARD),
        required=False,
        empty_label="None: keep every image, unfiltered",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from .selectors import default_diffusion_version

        # Querysets are evaluated per form, so a version made a second ago shows.
        _version_field(self, "model_version").queryset = _versions(ModelKind.DIFFUSION)
        rewards = _versions(ModelKind.REWARD)
        _version_field(self, "reward_version").queryset = rewards
        default = default_diffusion_version()
        if default is not None:
            self.fields["model_version"].initial = default.pk
        newest_reward = rewards.first()
        if newest_reward is not None:
            self.fields["reward_version"].initial = newest_reward.pk

    def clean_modality(self) -> str:
        return _clean_modality(self.cleaned_data["modality"])

    def clean_mode(self) -> str:
        mode = self.cleaned_data["mode"]
        if mode not in GENERATE_MODES:
            raise forms.ValidationError("unknown filter")
        return mode


# A single physician's 3 maps to 1.0 and a 2 to 0.5, so 0.75 keeps images
# rated 3 (or, with several physicians, mostly 3) and unrated images whose
# reward is at least 0.75: the experiment's filtered variant.
FILTERED_THRESHOLD = 0.75

OBJECTIVE_CHOICES = [
    ("weighted", "Weighted: every image, weighted by its rating (or reward)"),
    ("filtered", "Filtered: only images rated 3 (unrated: reward at least 0.75)"),
    ("kto", "KTO: learn from images rated 3 and away from images rated 1"),
    ("dpo", "DPO: pairs where one physician preferred one image to another"),
]
KTO_MIDDLE_CHOICES = [
    ("neutral", "Neutral: neither pulls nor pushes"),
    ("dropped", "Dropped: left out"),
    ("weighted", "Desirable, at half the weight of a 3"),
]


class RetrainingForm(forms.Form):
    """One retraining round: reward model, fine-tune (and its control), and
    the comparison round that decides whether the new version is promoted."""

    diffusion_version = VersionChoiceField(
        label="Fine-tune this version",
        queryset=_versions(ModelKind.DIFFUSION),
        empty_label=None,
    )
    reward_epochs = forms.IntegerField(
        label="Reward epochs", min_value=1, max_value=1000, initial=30
    )
    ensemble_size = forms.IntegerField(
        label="Ensemble size", min_value=1, max_value=16, initial=3
    )
    finetune_steps = forms.IntegerField(
        label="Fine-tune steps",
        min_value=1,
        max_value=100_000,
        required=False,
        help_text="Blank: the objective's own (docs/retraining.md).",
    )
    rater_weighting = forms.ChoiceField(
        label="Weight physicians by",
        choices=[
            ("none", "Nothing: every rating counts the same"),
            ("reliability", "Reliability: agreement with colleagues (kappa)"),
            ("expertise", "Expertise: trainee 0.5, specialist 1, expert 1.5"),
        ],
        initial="none",
        required=False,
        help_text="How much each physician's ratings count in the reward model.",
    )
    objective = forms.ChoiceField(
        label="Learn from the ratings by",
        choices=OBJECTIVE_CHOICES,
        required=False,
        help_text=OBJECTIVE_HELP,
    )
    kto_middle = forms.ChoiceField(
        label="KTO: an image rated 2 is",
        choices=KTO_MIDDLE_CHOICES,
        initial="neutral",
        required=False,
    )
    train_control = forms.BooleanField(
        label="Train a control beside it (the same images and steps, no ratings)",
        required=False,
        initial=True,
        help_text="The comparison round rates it too: the new version is "
        "promoted only if it beats both its parent and the control.",
    )
    open_next_round = forms.BooleanField(
        label="Open the comparison round (new version, parent, control)",
        required=False,
        initial=True,
    )
    best_of_n = forms.IntegerField(
        label="Also rate the parent best of N by reward (N, 0: no)",
        min_value=0,
        max_value=16,
        initial=DEFAULT_BEST_OF_N,
        required=False,
        help_text="Shows physicians what filtering alone gives, without "
        "fine-tuning. N must be 2 or more.",
    )
    expected_gain = forms.IntegerField(
        label="Expected gain (points rated 3)",
        min_value=1,
        max_value=50,
        initial=10,
        required=False,
        help_text="Sizes the comparison round: the smallest that detects it "
        "80 % of the time.",
    )
    images_per_prompt = forms.IntegerField(
        label="Images per prompt and arm",
        min_value=1,
        max_value=64,
        initial=8,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from .selectors import default_diffusion_version

        _version_field(self, "diffusion_version").queryset = _versions(
            ModelKind.DIFFUSION
        )
        default = default_diffusion_version()
        if default is not None and not self.initial.get("diffusion_version"):
            self.fields["diffusion_version"].initial = default.pk
        self.fields["objective"].initial = DEFAULT_OBJECTIVE

    def clean_best_of_n(self) -> int:
        value = self.cleaned_data.get("best_of_n") or 0
        if value == 1:
            raise forms.ValidationError("best of 1 is the parent itself: use 0 or 2+")
        return value

    def service_params(self) -> dict[str, Any]:
        data = self.cleaned_data
        objective = data.get("objective") or DEFAULT_OBJECTIVE
        params: dict[str, Any] = {
            "reward": {
                "epochs": data["reward_epochs"],
                "ensemble_size": data["ensemble_size"],
            },
            "finetune": {"objective": objective},
        }
        if data.get("finetune_steps"):
            params["finetune"]["max_steps"] = data["finetune_steps"]
        if objective == "filtered":
            params["finetune"]["filter_threshold"] = FILTERED_THRESHOLD
        if objective == "kto":
            params["finetune"]["kto_middle"] = data.get("kto_middle") or "neutral"
        if data.get("rater_weighting") not in (None, "", "none"):
            params["reward"]["rater_weighting"] = data["rater_weighting"]
        if data["open_next_round"]:
            params["round"] = {"images_per_prompt": data["images_per_prompt"]}
            # Sent even when 0 (none): left out, the run rates best-of-N.
            params["round"]["best_of_n"] = data.get("best_of_n") or 0
        return params


class RoundGenerateForm(RoundServingForm):
    """A round that generates: typed prompts, or prompts sampled from a dataset,
    with the serving design of any round."""

    name = forms.CharField(max_length=200)
    model_version = VersionChoiceField(
        queryset=_versions(ModelKind.DIFFUSION), empty_label=None
    )
    compare_model_version = VersionChoiceField(
        label="Compare with (optional)",
        queryset=_versions(ModelKind.DIFFUSION),
        required=False,
        help_text="Both versions draw the same prompts and seeds, blinded.",
    )
    prompts = forms.CharField(
        required=False,
        max_length=200_000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="One per line, whole, as the dataset writes them; the text "
        "before the colon names the modality (“Fundus: optic disc”).",
    )
    dataset = forms.ModelChoiceField(
        label="Or sample from",
        queryset=Dataset.objects.order_by("name"),
        required=False,
    )
    sample_modality = forms.CharField(
        label="Modality",
        max_length=64,
        required=False,
        help_text="Of pasted lines that do not start with one; or the one to "
        "sample (empty: every modality of the dataset).",
    )
    sample_count = forms.IntegerField(
        label="How many per modality", min_value=1, max_value=1000, initial=4
    )
    images_per_prompt = forms.IntegerField(
        label="Images / prompt", min_value=1, max_value=64, initial=4
    )
    control_percent = forms.IntegerField(
        label="Controls (%)", min_value=0, max_value=90, initial=10
    )
    raters_per_image = forms.IntegerField(
        label="Raters / image", min_value=1, max_value=20, initial=1
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        versions = _versions(ModelKind.DIFFUSION)
        for name in ("model_version", "compare_model_version"):
            _version_field(self, name).queryset = versions
        first = versions.first()
        if first is not None:
            self.fields["model_version"].initial = first.pk

    def clean_sample_modality(self) -> str:
        raw = self.cleaned_data["sample_modality"].strip()
        return _clean_modality(raw) if raw else ""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        text = data.get("prompts") or ""
        data["prompts"] = []
        if text.strip():
            try:
                data["prompts"] = prompts_parse(
                    text, modality=data.get("sample_modality", "")
                )
            except DomainError as exc:
                self.add_error("prompts", str(exc))
        elif not data.get("dataset"):
            self.add_error(
                "prompts", "type prompts, or choose a dataset to sample them from"
            )
        return data


class ReviewFilterForm(forms.Form):
    """Which scored generations the review page shows (a GET form)."""

    model_version = VersionChoiceField(
        label="Model version",
        queryset=_versions(ModelKind.DIFFUSION),
        empty_label=None,
    )
    threshold = forms.FloatField(
        label="Reward threshold",
        min_value=0,
        max_value=1,
        help_text="At or above: kept. Below: rejected.",
        widget=forms.NumberInput(attrs={"step": "0.01"}),
    )
    show = forms.ChoiceField(
        choices=[
            ("all", "Kept and rejected"),
            ("kept", "Kept"),
            ("rejected", "Rejected"),
        ],
        initial="all",
        required=False,
    )
    modality = forms.ChoiceField(choices=[("", "Every modality")], required=False)
    unused_only = forms.BooleanField(
        label="Only images in no round yet", required=False
    )

    def __init__(
        self, *args: Any, modalities: Sequence[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["modality"]).choices = [
            ("", "Every modality")
        ] + [(m, m) for m in modalities]

    def clean_show(self) -> str:
        return self.cleaned_data.get("show") or "all"


class ReviewRoundForm(forms.Form):
    """The round a review's selection becomes."""

    name = forms.CharField(label="Round name", max_length=200)
    raters_per_image = forms.IntegerField(min_value=1, max_value=50, initial=1)
    control_percent = forms.IntegerField(
        label="Real controls (%)",
        min_value=0,
        max_value=90,
        initial=0,
        help_text="Real images mixed in, from the version's dataset.",
    )
    open_now = forms.BooleanField(
        required=False, initial=True, label="Open for rating now"
    )
    selection = forms.ChoiceField(
        choices=[("picked", "Checked images"), ("all_kept", "Every kept image")]
    )
    image = forms.TypedMultipleChoiceField(required=False, coerce=str)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Any uid may be posted; the service checks it belongs to the review.
        self.fields["image"].valid_value = lambda value: True  # type: ignore[attr-defined]

    def clean_image(self) -> list[Any]:
        uids = []
        for value in self.cleaned_data.get("image") or []:
            try:
                uids.append(uuid.UUID(value))
            except ValueError as exc:
                raise forms.ValidationError(f"{value!r} is not an image uid") from exc
        return uids

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("selection") == "picked" and not data.get("image"):
            raise forms.ValidationError(
                "check at least one image, or take every kept one"
            )
        return data
