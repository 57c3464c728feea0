"""What the platform keeps about a physician as a rater: expertise, and
their own keys for the rating page."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models

from .models_base import TimeStampedModel


class ExpertLevel(models.TextChoices):
    TRAINEE = "trainee", "Trainee / resident"
    SPECIALIST = "specialist", "Specialist"
    EXPERT = "expert", "Senior expert"


class RaterProfile(TimeStampedModel):
    """What a rating export needs to know about a physician."""

    user = models.OneToOneField(
        django_settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="rater_profile",
    )
    expert_level = models.CharField(
        max_length=16, choices=ExpertLevel.choices, default=ExpertLevel.SPECIALIST
    )
    specialty = models.CharField(max_length=100, blank=True)
    key_map = models.JSONField(
        default=dict,
        blank=True,
        help_text="The physician's own keys for the rating page's actions "
        "(annotations.viewer_keys); actions not named keep their default.",
    )
    auto_advance = models.BooleanField(
        default=True,
        db_default=True,
        help_text="A score key records the rating and shows the next image at "
        "once; off: it selects the score and Enter records it.",
    )

    def __str__(self) -> str:
        return f"{self.user} ({self.expert_level})"
