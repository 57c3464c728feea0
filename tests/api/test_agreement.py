"""The agreement API: the page's figures as JSON, with validated filters."""

from __future__ import annotations

import pytest

from annotations.models import Role
from models_ml.models import ModelKind
from tests.annotations.rater_data import rated_round, score_images, version

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


def test_agreement_endpoint_returns_every_figure_with_n_and_interval(client_as, w):
    body = (
        client_as(Role.RESEARCHER)
        .get(f"/api/rounds/{w.round.pk}/agreement/", {"n_boot": 200, "seed": 3})
        .json()
    )

    assert body["round"] == {"id": w.round.pk, "name": "round"}
    assert body["scope"] == "agreement set"
    assert body["bootstrap"] == {"n_boot": 200, "seed": 3}
    assert body["alpha"]["n"] == 6 and body["alpha"]["ci_low"] is not None
    assert [m["modality"] for m in body["alpha_by_modality"]] == ["ct", "fundus"]
    assert body["kappa_matrix"]["raters"] == ["ann", "bob", "cat"]
    assert body["retest"][0]["rater"] == "ann" and body["retest"][0]["n"] == 2
    ann = body["turing_by_physician"][0]
    assert ann["group"] == "ann"
    assert ann["p_synthetic_at_least_real"]["value"] == pytest.approx(0.1)
    assert body["counts"]["repeats"] == 2
    assert body["score_drift"]["n"] == 22


def test_the_same_seed_gives_the_same_intervals(client_as, w):
    client = client_as(Role.ADMIN)
    url = f"/api/rounds/{w.round.pk}/agreement/"

    first = client.get(url, {"n_boot": 100, "seed": 1}).json()
    again = client.get(url, {"n_boot": 100, "seed": 1}).json()

    assert first["alpha"] == again["alpha"]


def test_filters_are_validated_naming_the_field(client_as, w):
    client = client_as(Role.RESEARCHER)
    url = f"/api/rounds/{w.round.pk}/agreement/"
    other = version("elsewhere")

    bad_modality = client.get(url, {"modality": "mri"})
    bad_version = client.get(url, {"model_version": other.pk})
    bad_boot = client.get(url, {"n_boot": 999999})

    assert bad_modality.status_code == 400
    assert bad_modality.json() == {"modality": ["no 'mri' image in this round"]}
    assert bad_version.status_code == 400
    assert bad_version.json() == {
        "model_version": [f"model version {other.pk} made no image of this round"]
    }
    assert bad_boot.status_code == 400 and "n_boot" in bad_boot.json()


def test_model_version_filter_keeps_real_controls(client_as, w):
    body = (
        client_as(Role.RESEARCHER)
        .get(
            f"/api/rounds/{w.round.pk}/agreement/",
            {"model_version": w.versions["v1"].pk, "n_boot": 0},
        )
        .json()
    )

    assert body["filters"]["model_version"] == {
        "id": w.versions["v1"].pk,
        "name": "v1",
    }
    assert body["counts"]["real_controls"] == 2


def test_reward_endpoint_compares_the_model_with_the_human_ceiling(client_as, w):
    rm = version("rm", ModelKind.REWARD)
    score_images(rm, w.images, {0: 2.9, 1: 3.0, 2: 1.1, 3: 2.2})

    body = (
        client_as(Role.RESEARCHER)
        .get(
            f"/api/rounds/{w.round.pk}/agreement/reward/",
            {"reward_model": rm.pk, "n_boot": 100},
        )
        .json()
    )

    assert body["reward_model"] == {"id": rm.pk, "name": "rm"}
    assert body["reward_models"] == [{"id": rm.pk, "name": "rm"}]
    assert (body["n_items"], body["n_scored"], body["n_missing"]) == (6, 4, 2)
    assert "score round" in body["note"]
    ann = body["rows"][0]
    assert ann["rater"] == "ann" and ann["model_kappa"]["n"] == 4
    assert ann["model_kappa"]["value"] == pytest.approx(1.0)
    assert ann["n_colleagues"] == 2


def test_reward_endpoint_refuses_a_diffusion_version_as_reward_model(client_as, w):
    response = client_as(Role.RESEARCHER).get(
        f"/api/rounds/{w.round.pk}/agreement/reward/",
        {"reward_model": w.versions["v1"].pk},
    )

    assert response.status_code == 400
    assert response.json() == {
        "reward_model": [f"{w.versions['v1'].pk} is not a reward model"]
    }


def test_a_missing_round_is_a_404(client_as, w):
    response = client_as(Role.RESEARCHER).get("/api/rounds/999999/agreement/")

    assert response.status_code == 404
