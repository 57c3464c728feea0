"""The agreement pages: who may see them and what they show."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Role
from models_ml.models import ModelKind

from .rater_data import rated_round, score_images, version

pytestmark = pytest.mark.django_db

RATINGS = {
    "ann": [3, 3, 1, 2, 3, 1, 2, None],
    "bob": [3, 2, 1, 2, 3, 2, None, 1],
    "cat": [2, 3, 2, 3, 3, 1, None, None],
}


@pytest.fixture
def w():
    return rated_round(
        ratings=RATINGS,
        real={0, 1},
        agreement_set={0, 1, 2, 3, 4, 5},
        modalities={i: "ct" if i < 4 else "fundus" for i in range(8)},
        repeats={"ann": {2: 1, 3: 3}},
    )


def login(client, make_user, role):
    user = make_user(role)
    client.force_login(user)
    return user


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.PHYSICIAN, 403), (Role.RESEARCHER, 200), (Role.ADMIN, 200)],
)
def test_agreement_pages_are_for_researchers_and_admins(
    client, make_user, w, role, status
):
    login(client, make_user, role)

    page = client.get(reverse("round-agreement", args=[w.round.pk]))
    index = client.get(reverse("agreement-index"))

    assert page.status_code == status
    assert index.status_code == status


def test_anonymous_visitors_are_sent_to_log_in(client, w):
    response = client.get(reverse("round-agreement", args=[w.round.pk]))

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_missing_round_is_a_404(client, make_user, w):
    login(client, make_user, Role.RESEARCHER)

    assert client.get(reverse("round-agreement", args=[999999])).status_code == 404


def test_page_shows_every_figure_with_its_n_and_interval(client, make_user, w):
    login(client, make_user, Role.RESEARCHER)

    html = client.get(reverse("round-agreement", args=[w.round.pk])).content.decode()

    assert "Krippendorff" in html and "n = 6 images" in html
    assert "agreement set" in html
    for heading in (
        "Agreement between physicians",
        "Test–retest",
        "Visual Turing test",
        "Time per image and drift",
        "Reward model against the human ceiling",
    ):
        assert heading in html
    assert html.count("<svg") >= 6
    assert 'data-testid="retest-table"' in html
    assert "No reward model has scored this round yet" in html


def test_filter_by_modality_narrows_the_figures(client, make_user, w):
    login(client, make_user, Role.RESEARCHER)

    html = client.get(
        reverse("round-agreement", args=[w.round.pk]), {"modality": "fundus"}
    ).content.decode()

    assert "Modality: <strong>fundus</strong>" in html
    assert "n = 2 images" in html


def test_an_unknown_filter_value_is_refused_naming_the_field(client, make_user, w):
    login(client, make_user, Role.RESEARCHER)

    response = client.get(
        reverse("round-agreement", args=[w.round.pk]), {"modality": "mri"}
    )

    assert response.status_code == 400
    assert "Modality: Select a valid choice" in response.content.decode()


def test_reward_ceiling_appears_once_the_round_is_scored(client, make_user, w):
    rm = version("rm-1", ModelKind.REWARD)
    score_images(rm, w.images, {0: 2.9, 1: 3.0, 2: 1.1, 3: 2.2, 4: 2.6, 5: 1.3})
    login(client, make_user, Role.ADMIN)

    html = client.get(
        reverse("round-agreement", args=[w.round.pk]), {"reward_model": rm.pk}
    ).content.decode()

    assert 'data-testid="ceiling-summary"' in html
    assert "6 of 6 images scored" in html
    assert "1.00 [" in html  # ann against the model


def test_rounds_page_dashboard_and_nav_link_to_agreement(client, make_user, w):
    login(client, make_user, Role.ADMIN)
    target = reverse("round-agreement", args=[w.round.pk])

    assert target in client.get(reverse("rounds")).content.decode()
    assert (
        reverse("agreement-index")
        in client.get(reverse("ml-dashboard")).content.decode()
    )
    index = client.get(reverse("agreement-index")).content.decode()
    assert target in index


def test_physicians_get_no_agreement_link(client, make_user, w):
    login(client, make_user, Role.PHYSICIAN)

    html = client.get(reverse("home")).content.decode()

    assert reverse("agreement-index") not in html


def test_a_round_without_ratings_renders_with_empty_figures(client, make_user):
    from annotations.models import Round

    rnd = Round.objects.create(name="empty")
    login(client, make_user, Role.RESEARCHER)

    response = client.get(reverse("round-agreement", args=[rnd.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Fewer than two physicians rated this round." in html
    assert "No repeat rated yet." in html
    assert "No reward model has scored this round yet" in html
