"""The home page: what each role needs to start work."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import render

from annotations.rating.access import rater_may_rate
from models_ml.models import Job

from ..models import Dataset, Round, RoundStatus
from ..roles import can_export, is_admin, is_physician, is_researcher
from ..selectors import round_progress
from ..users import AuthedRequest

RECENT = 10


@login_required
def home(request: AuthedRequest) -> HttpResponse:
    user = request.user
    context: dict[str, object] = {"can_export": can_export(user)}
    if is_physician(user):
        context["rater_rounds"] = [
            (rnd, round_progress(round=rnd, user=user))
            for rnd in Round.objects.filter(status=RoundStatus.RATING).order_by("name")
            if rater_may_rate(round=rnd, rater=user)
        ]
    if is_admin(user) or is_researcher(user):
        context["rounds"] = Round.objects.annotate(
            n_images=Count("items", distinct=True),
            n_ratings=Count(
                "ratings",
                filter=Q(ratings__retracted_at=None, ratings__is_repeat=False),
                distinct=True,
            ),
        )[:RECENT]
    if is_admin(user):
        context["datasets"] = Dataset.objects.annotate(n_images=Count("images"))[
            :RECENT
        ]
        context["jobs"] = Job.objects.all()[:RECENT]
    return render(request, "home.html", context)
