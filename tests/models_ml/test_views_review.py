"""The review page: admins only; a threshold re-filters server-side; pages of
tiles; checked images (or every kept one) become a rating round."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Role, Round, RoundStatus

from .review_data import diffusion, reward, scored

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
URL = "/models/review/"


@pytest.fixture
def version():
    version = diffusion()
    for i, score in enumerate([0.92, 0.81, 0.64, 0.47, 0.2]):
        scored(version, score, seed=i)
    scored(version, None)
    return version


def test_the_page_is_at_models_review(db):
    assert reverse("ml-review") == URL


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.RESEARCHER])
def test_physicians_and_researchers_may_neither_review_nor_create_a_round(
    client, make_user, version, role
):
    client.force_login(make_user(role))
    assert client.get(URL).status_code == 403
    response = client.post(
        reverse("ml-review-round"),
        {
            "model_version": version.pk,
            "threshold": "0.5",
            "name": "x",
            "raters_per_image": 1,
            "control_percent": 0,
            "selection": "all_kept",
        },
    )
    assert response.status_code == 403
    assert not Round.objects.exists()


def test_admin_sees_the_newest_version_at_the_calibrated_threshold_best_first(
    client, admin_user, version
):
    reward(metrics={"threshold": 0.6})
    client.force_login(admin_user)
    response = client.get(URL)
    assert response.status_code == 200
    review = response.context["review"]
    assert review.model_version == version and review.threshold == pytest.approx(0.6)
    assert response.context["counts"] == {
        "kept": 3,
        "rejected": 2,
        "total": 5,
        "unscored": 1,
    }
    scores = [t["image"].reward_score for t in response.context["tiles"]]
    assert scores == [0.92, 0.81, 0.64, 0.47, 0.2]
    assert [t["kept"] for t in response.context["tiles"]] == [True] * 3 + [False] * 2
    html = response.content.decode()
    assert "1 more have no reward score" in html
    assert "Create round from all 3 kept" in html


def test_changing_the_threshold_answers_only_the_results_refiltered(
    client, admin_user, version
):
    client.force_login(admin_user)
    response = client.get(
        URL, {"model_version": version.pk, "threshold": "0.8", "show": "kept"}, **HTMX
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="review-results"')
    assert "ml-tabs" not in html and "review-filter" not in html
    assert [t["image"].reward_score for t in response.context["tiles"]] == [
        0.92,
        0.81,
    ]
    assert response.context["counts"]["kept"] == 2
    assert 'name="threshold" value="0.8"' in html


def test_a_threshold_out_of_range_is_named(client, admin_user, version):
    client.force_login(admin_user)
    response = client.get(URL, {"model_version": version.pk, "threshold": "1.5"})
    assert response.status_code == 400
    assert response.context["filter_form"].errors["threshold"]
    assert "tiles" not in response.context
    refiltered = client.get(
        URL, {"model_version": version.pk, "threshold": "-1"}, **HTMX
    ).content.decode()
    assert 'data-testid="filter-error"' in refiltered
    assert "Threshold: Ensure this value is greater than or equal to 0" in refiltered


def test_thousands_of_images_come_a_page_at_a_time(client, admin_user):
    version = diffusion("big")
    for i in range(100):
        scored(version, i / 100, seed=i)
    client.force_login(admin_user)
    first = client.get(URL, {"model_version": version.pk, "threshold": "0.5"})
    assert len(first.context["tiles"]) == 48
    html = first.content.decode()
    assert "Page 1 of 3" in html
    assert f"model_version={version.pk}&amp;threshold=0.5&amp;show=all" in html
    last = client.get(URL, {"model_version": version.pk, "threshold": "0.5", "page": 3})
    assert [t["image"].reward_score for t in last.context["tiles"]] == [
        0.03,
        0.02,
        0.01,
        0.0,
    ]


def _round_post(version, **extra):
    return {
        "model_version": version.pk,
        "threshold": "0.6",
        "show": "all",
        "modality": "",
        "name": "Reviewed retina v2",
        "raters_per_image": 2,
        "control_percent": 0,
        "open_now": "on",
        **extra,
    }


def test_checked_images_become_an_open_round_and_the_admin_lands_on_rounds(
    client, admin_user, version
):
    picks = [t.uid for t in version.images.filter(reward_score__in=[0.92, 0.2])]
    client.force_login(admin_user)
    response = client.post(
        reverse("ml-review-round"),
        _round_post(version, selection="picked", image=[str(u) for u in picks]),
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("rounds")
    rnd = Round.objects.get()
    assert rnd.status == RoundStatus.RATING and rnd.raters_per_image == 2
    assert set(rnd.items.values_list("image__uid", flat=True)) == set(picks)
    assert rnd.settings["review"]["threshold"] == 0.6
    assert rnd.settings["review"]["kept"] == 1
    html = response.content.decode()
    assert "Round “Reviewed retina v2” created and opened for rating with 2 images" in (
        html
    )
    assert "from review of retina v2 at ≥ 0.60" in html


def test_all_kept_sends_every_image_at_or_above_the_threshold(
    client, admin_user, version
):
    client.force_login(admin_user)
    client.post(reverse("ml-review-round"), _round_post(version, selection="all_kept"))
    rnd = Round.objects.get()
    assert sorted(rnd.items.values_list("image__reward_score", flat=True)) == [
        0.64,
        0.81,
        0.92,
    ]


def test_nothing_checked_is_refused_and_nothing_is_created(client, admin_user, version):
    client.force_login(admin_user)
    response = client.post(
        reverse("ml-review-round"), _round_post(version, selection="picked")
    )
    assert response.status_code == 400
    assert "check at least one image" in response.content.decode()
    assert not Round.objects.exists()


def test_a_refused_round_keeps_the_filter_and_the_checked_images(
    client, admin_user, version
):
    pick = version.images.get(reward_score=0.81).uid
    client.force_login(admin_user)
    response = client.post(
        reverse("ml-review-round"),
        _round_post(
            version, selection="picked", image=[str(pick)], raters_per_image=1,
            control_percent=50,
        ),
    )  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 400
    assert "real control images, but only 0 are available" in html
    assert f'value="{pick}" checked' in html.replace("\n", " ").replace("  ", " ")
    assert response.context["review"].threshold == pytest.approx(0.6)
    assert not Round.objects.exists()
