"""Forms of the pages: they validate input; services do the work."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from models_ml.models import ModelKind, ModelVersion

from .design import (
    DEFAULT_RESCORE_EVERY,
    MAX_REPEAT_SHARE,
    MAX_RESCORE_EVERY,
    ServingDesign,
)
from .models import Dataset, Flag, Image, ImageSource, Role, Round, ServingPolicy
from .presentation import DISPLAY_SIZE_MAX, DISPLAY_SIZE_MIN
from .selectors import control_pool
from .serving_rules import REPEAT_GAP
from .users import User
from .viewer_keys import ACTIONS, KeyMapError, key_map_clean

MAX_ROUND_IMAGES = 100_000


class RatingForm(forms.Form):
    image = forms.UUIDField(widget=forms.HiddenInput)
    score = forms.TypedChoiceField(
        choices=[(1, "1"), (2, "2"), (3, "3")],
        coerce=int,
        error_messages={
            "required": "choose a score of 1, 2 or 3",
            "invalid_choice": "the score must be 1, 2 or 3",
        },
    )
    flags = forms.MultipleChoiceField(choices=Flag.choices, required=False)
    comment = forms.CharField(max_length=2000, required=False)
    time_taken_ms = forms.IntegerField(min_value=0, required=False)


class SkipForm(forms.Form):
    image = forms.UUIDField(widget=forms.HiddenInput)


def _physicians() -> QuerySet[User]:
    return (
        get_user_model()
        .objects.filter(groups__name=Role.PHYSICIAN, is_active=True)
        .order_by("username")
    )


class PhysicianChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return obj.get_full_name() or obj.get_username()


class RoundServingForm(forms.Form):
    """The serving design of a new round, chosen or generated; shares in percent.

    The services check the design again (``ServingDesign.checked``); here a page gets
    its errors beside the field.
    """

    agreement_percent = forms.IntegerField(
        label="Agreement set (%)",
        required=False,
        min_value=0,
        max_value=100,
        initial=0,
        help_text="Share of the round's images (controls included) that every "
        "physician rates, beyond raters per image: the overlap agreement needs.",
    )
    repeat_percent = forms.IntegerField(
        label="Repeats (%)",
        required=False,
        min_value=0,
        max_value=int(MAX_REPEAT_SHARE * 100),
        initial=0,
        help_text="Share of each physician's images shown to them again, "
        f"unannounced, at least {REPEAT_GAP} images later (test-retest).",
    )
    serving_policy = forms.ChoiceField(
        label="Serving order",
        required=False,
        choices=ServingPolicy.choices,
        initial=ServingPolicy.RANDOM,
        help_text="Most informative first: images the reward model is least "
        "sure of, and where physicians disagree, are rated first, each "
        "modality kept to its share. With simulated noisy physicians it "
        "trained a better reward model than random order from about 60 "
        "ratings on, never a significantly worse one, when re-scored; "
        "scored only once it did worse. Random order is the default.",
    )
    rescore_every = forms.IntegerField(
        label="Re-score every (ratings)",
        required=False,
        min_value=0,
        max_value=MAX_RESCORE_EVERY,
        help_text="Most informative first only: after this many new ratings "
        "a reward model is trained on every rating so far and scores the "
        f"round again. Empty: every {DEFAULT_RESCORE_EVERY}; 0: never.",
    )
    reward_model_version = forms.ModelChoiceField(
        label="Reward model",
        queryset=ModelVersion.objects.none(),
        required=False,
        empty_label="None",
        help_text="Scores the round's images once it has them; needed for "
        "most-informative-first serving.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        reward_field = self.fields["reward_model_version"]
        assert isinstance(reward_field, forms.ModelChoiceField)
        reward_field.queryset = ModelVersion.objects.filter(
            kind=ModelKind.REWARD
        ).order_by("-created_at")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # Left empty, the serving fields mean what a plain round does.
        data["agreement_percent"] = data.get("agreement_percent") or 0
        data["repeat_percent"] = data.get("repeat_percent") or 0
        data["serving_policy"] = data.get("serving_policy") or ServingPolicy.RANDOM
        if (
            data["serving_policy"] == ServingPolicy.UNCERTAINTY
            and not data.get("reward_model_version")
            and "reward_model_version" not in self.errors
        ):
            self.add_error(
                "reward_model_version",
                "Most informative first needs a reward model to score the images.",
            )
        if (
            data.get("rescore_every")
            and data["serving_policy"] != ServingPolicy.UNCERTAINTY
        ):
            self.add_error(
                "rescore_every",
                "Re-scoring applies to most informative first only; leave it "
                "empty for random order.",
            )
        return data

    def serving_design(self) -> ServingDesign:
        """The cleaned serving fields as one ``ServingDesign``."""
        data = self.cleaned_data
        return ServingDesign(
            agreement_share=data["agreement_percent"] / 100,
            repeat_share=data["repeat_percent"] / 100,
            serving_policy=data["serving_policy"],
            rescore_every=data.get("rescore_every"),
            reward_model_version=data.get("reward_model_version"),
        )


class RoundCreateForm(RoundServingForm):
    SOURCE_CHOICES = [("", "Real and generated"), *ImageSource.choices]

    name = forms.CharField(max_length=200)
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False
    )
    datasets = forms.ModelMultipleChoiceField(
        queryset=Dataset.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every dataset.",
    )
    modalities = forms.MultipleChoiceField(
        choices=[],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every modality.",
    )
    source = forms.ChoiceField(choices=SOURCE_CHOICES, required=False)
    max_images = forms.IntegerField(
        min_value=1,
        max_value=MAX_ROUND_IMAGES,
        required=False,
        help_text="Empty: every matching image; otherwise a random sample.",
    )
    raters_per_image = forms.IntegerField(min_value=1, max_value=50, initial=1)
    control_percent = forms.IntegerField(
        label="Real controls (%)",
        min_value=0,
        max_value=90,
        initial=0,
        help_text="Share of the round made of real images mixed in as controls.",
    )
    raters = PhysicianChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every physician may rate.",
    )
    open_now = forms.BooleanField(
        required=False, initial=True, label="Open for rating now"
    )
    display_size = forms.IntegerField(
        label="Display size (px)",
        min_value=DISPLAY_SIZE_MIN,
        max_value=DISPLAY_SIZE_MAX,
        required=False,
        help_text="Every image of the round is shown at this size. Empty: the "
        "smallest generator resolution in the round (256 for real images "
        "only). Larger than a generator's images is refused: they would stand out.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        modalities = (
            Image.objects.filter(quarantined=False)
            .order_by("modality")
            .values_list("modality", flat=True)
            .distinct()
        )
        modalities_field = self.fields["modalities"]
        assert isinstance(modalities_field, forms.MultipleChoiceField)
        modalities_field.choices = [(m, m) for m in modalities]
        raters_field = self.fields["raters"]
        assert isinstance(raters_field, PhysicianChoiceField)
        raters_field.queryset = _physicians()

    def _matching(self) -> QuerySet[Image]:
        data = self.cleaned_data
        qs = Image.objects.filter(quarantined=False)
        if data.get("datasets"):
            qs = qs.filter(dataset__in=data["datasets"])
        if data.get("modalities"):
            qs = qs.filter(modality__in=data["modalities"])
        if data.get("source"):
            qs = qs.filter(source=data["source"])
        return qs

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        ids = list(self._matching().values_list("pk", flat=True))
        if not ids:
            raise forms.ValidationError(
                "No image matches these datasets and modalities."
            )
        limit = data.get("max_images")
        if limit and limit < len(ids):
            ids = secrets.SystemRandom().sample(ids, limit)
        data["image_ids"] = ids
        return data

    def images(self) -> list[Image]:
        return list(Image.objects.filter(pk__in=self.cleaned_data["image_ids"]))

    def control_pool(self) -> QuerySet[Image]:
        """Real controls of the chosen images' modalities (``control_pool``)."""
        modalities = Image.objects.filter(
            pk__in=self.cleaned_data["image_ids"]
        ).values_list("modality", flat=True)
        return control_pool(modalities=set(modalities))


class _ImportFields(forms.Form):
    ON_ERROR_CHOICES = [
        ("reject", "Reject the whole import if any row is bad"),
        ("skip", "Import the good rows, report the bad ones"),
    ]
    AXIS_CHOICES = [
        (2, "Axial (axis 2)"),
        (1, "Coronal (axis 1)"),
        (0, "Sagittal (axis 0)"),
    ]

    name = forms.CharField(max_length=200, label="Dataset name")
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False
    )
    modality = forms.CharField(
        max_length=64,
        required=False,
        help_text="For files without a modality column, e.g. CT, MR, fundus.",
    )
    on_error = forms.ChoiceField(choices=ON_ERROR_CHOICES, initial="reject")
    nifti_axis = forms.TypedChoiceField(
        choices=AXIS_CHOICES, coerce=int, initial=2, label="NIfTI slice axis"
    )


class DatasetUploadForm(_ImportFields):
    field_order = ["file", "name"]

    file = forms.FileField(
        widget=forms.ClearableFileInput(attrs={"accept": ".zip"}),
        help_text="A .zip holding the CSV (path,Text[,modality]) and its images, "
        "or a folder of label_xxx.png images.",
    )


class DatasetFolderForm(_ImportFields):
    field_order = ["path", "name"]

    path = forms.CharField(
        max_length=1000,
        label="Server path",
        help_text="A CSV file or a folder inside the allowed import folders.",
    )


class ReleaseForm(forms.Form):
    note = forms.CharField(
        max_length=500,
        label="What you checked",
        help_text="E.g. “looked at it: no text in the image”. Goes in the audit log.",
    )


class ExportForm(forms.Form):
    round = forms.ModelChoiceField(
        queryset=Round.objects.order_by("-created_at"),
        required=False,
        empty_label="All rounds",
    )


class ViewerKeysForm(forms.Form):
    """A physician's keys for the rating page: one field per action."""

    auto_advance = forms.BooleanField(
        required=False,
        label="Auto-advance",
        help_text="A score key records the rating and shows the next image at "
        "once. Off: a score key selects the score, and the confirm key records it.",
    )

    def __init__(self, *args: Any, keys: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for action, (label, default) in ACTIONS.items():
            self.fields[f"key_{action}"] = forms.CharField(
                label=label,
                max_length=20,
                initial=keys.get(action, default),
                help_text=f"default: {default}",
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None  # Form.clean returns cleaned_data
        chosen = {
            action: data[f"key_{action}"]
            for action in ACTIONS
            if data.get(f"key_{action}") is not None
        }
        try:
            data["key_map"] = key_map_clean(chosen)
        except KeyMapError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data
