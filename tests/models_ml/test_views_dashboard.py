"""The round dashboard: admin only; SVG plots from ratings, reward metrics and
jobs; a verdict on whether the last round helped."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Rating, Role, Round, RoundStatus
from models_ml.models import Job, JobKind
from tests.factories import ImageFactory

from .ml_page_data import diffusion, reward

pytestmark = pytest.mark.django_db


def _compare_round(admin_user, rater, *, new_threes: int, old_threes: int, n: int):
    """A rating round comparing two versions, rated directly (n images each)."""
    old = diffusion("old")
    new = diffusion("new", parent=old)
    rnd = Round.objects.create(
        name="round 2",
        status=RoundStatus.RATING,
        model_version=new,
        compare_model_version=old,
        created_by=admin_user,
    )
    for version, threes in ((new, new_threes), (old, old_threes)):
        for i in range(n):
            image = ImageFactory(
                dataset=None,
                source="generated",
                model_version=version,
                reward_score=0.9 if i < threes else 0.2,
            )
            Rating.objects.create(
                rater=rater, image=image, round=rnd, score=3 if i < threes else 1
            )
    return rnd


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.RESEARCHER])
def test_non_admins_are_refused(client, make_user, role):
    client.force_login(make_user(role))
    assert client.get(reverse("ml-dashboard")).status_code == 403


def test_empty_dashboard_says_there_is_nothing_yet(client, admin_user):
    client.force_login(admin_user)
    html = client.get(reverse("ml-dashboard")).content.decode()
    assert "No rating yet." in html
    assert "No reward model yet." in html
    assert "<svg" not in html


def test_clear_improvement_is_called_helped_and_every_plot_is_drawn(
    client, admin_user, physician
):
    _compare_round(admin_user, physician, new_threes=36, old_threes=8, n=40)
    reward("r1", metrics={"spearman": 0.4, "kappa_quadratic": 0.3, "auc_rated_3": 0.7})
    reward("r2", metrics={"spearman": 0.6, "kappa_quadratic": None, "auc_rated_3": 0.8})
    Job.objects.create(kind=JobKind.FINETUNE, params={})
    client.force_login(admin_user)
    response = client.get(reverse("ml-dashboard"))
    html = response.content.decode()
    assert response.status_code == 200
    assert response.context["verdict"].tone == "good"
    assert "The last round helped" in html
    assert "new 90% rated 3 (36/40" in html
    assert html.count("<svg") == 4
    assert "round 2 · new" in html and "round 2 · old" in html
    assert "Reward-weighted fine-tune" in html
    # No inline style anywhere: the CSP would block it.
    assert "style=" not in html


def test_overlapping_intervals_are_called_no_clear_difference(
    client, admin_user, physician
):
    _compare_round(admin_user, physician, new_threes=3, old_threes=2, n=6)
    client.force_login(admin_user)
    response = client.get(reverse("ml-dashboard"))
    assert response.context["verdict"].tone == "neutral"
    assert "No clear difference yet" in response.content.decode()


def test_chart_labels_are_escaped(client, admin_user, physician):
    rnd = _compare_round(admin_user, physician, new_threes=1, old_threes=1, n=2)
    Round.objects.filter(pk=rnd.pk).update(name='<script>alert("x")</script>')
    client.force_login(admin_user)
    html = client.get(reverse("ml-dashboard")).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html
