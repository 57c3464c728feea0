"""The agreement and reward-ceiling reports on rounds built in the database."""

from __future__ import annotations

import pytest

from annotations.rater_report import (
    SCOPE_AGREEMENT_SET,
    SCOPE_MULTI_RATED,
    agreement_report,
    reward_ceiling_report,
    spearman_estimate,
)
from annotations.stats.agreement import krippendorff_alpha, quadratic_kappa
from models_ml.models import ModelKind

from .rater_data import rated_round, score_images, version

pytestmark = pytest.mark.django_db

# Images 0 and 1 are real; 0-5 form the agreement set; 6 and 7 are rated by
# one physician each.  Images 0-3 are CT, 4-7 fundus.
RATINGS = {
    "ann": [3, 3, 1, 2, 3, 1, 2, None],
    "bob": [3, 2, 1, 2, 3, 2, None, 1],
    "cat": [2, 3, 2, 3, 3, 1, None, None],
}


def world(**kwargs):
    return rated_round(
        ratings=RATINGS,
        real={0, 1},
        agreement_set={0, 1, 2, 3, 4, 5},
        modalities={i: "ct" if i < 4 else "fundus" for i in range(8)},
        **kwargs,
    )


def by_index(w, row):
    return {w.images[i].pk: s for i, s in enumerate(row[:6]) if s is not None}


def test_between_physician_figures_use_the_agreement_set() -> None:
    w = world()

    report = agreement_report(round=w.round, n_boot=200)

    expected = {name: by_index(w, row) for name, row in RATINGS.items()}
    assert report.scope == SCOPE_AGREEMENT_SET
    assert report.alpha.value == pytest.approx(krippendorff_alpha(expected))
    assert report.alpha.n == 6
    assert report.alpha.ci_low is not None
    assert report.kappa.raters == ["ann", "bob", "cat"]
    assert report.kappa.kappa[0][1] == pytest.approx(
        quadratic_kappa(expected["ann"], expected["bob"])
    )
    assert report.counts == {
        "ratings": 20,
        "first_ratings": 20,
        "repeats": 0,
        "physicians": 3,
        "images": 8,
        "real_controls": 2,
        "images_in_scope": 6,
    }
    assert [m for m, _ in report.alpha_by_modality] == ["ct", "fundus"]
    assert report.alpha_by_modality[1][1].n == 2


def test_without_an_agreement_set_every_multiply_rated_image_counts() -> None:
    w = rated_round(ratings={"ann": [1, 2, 3], "bob": [1, 3, None]})

    report = agreement_report(round=w.round, n_boot=0)

    assert report.scope == SCOPE_MULTI_RATED
    assert report.alpha.n == 2
    # Image 2, rated by ann alone, pairs with no one: not in the scope.
    assert report.counts["images_in_scope"] == 2
    assert report.counts["images"] == 3


def test_a_round_rated_by_one_physician_has_no_images_in_scope() -> None:
    w = rated_round(ratings={"ann": [1, 2, 3]})

    report = agreement_report(round=w.round, n_boot=0)

    assert report.scope == SCOPE_MULTI_RATED
    assert report.counts["images"] == 3
    assert report.counts["images_in_scope"] == 0
    assert report.alpha.value is None


def test_visual_turing_test_per_physician_and_modality() -> None:
    w = world()

    report = agreement_report(round=w.round, n_boot=100)

    turing = dict(report.turing_by_physician)
    # ann: real 3 3; synthetic 1 2 3 1 2.  Pairs 10: the 3 ties twice (1),
    # everything else loses -> P = 1/10.
    assert turing["ann"].p_synthetic_at_least_real.value == pytest.approx(0.1)
    assert turing["ann"].real.n == 2 and turing["ann"].synthetic.n == 5
    by_modality = dict(report.turing_by_modality)
    # fundus has no real image
    assert by_modality["fundus"].p_synthetic_at_least_real.value is None
    assert by_modality["ct"].real.n == 6


def test_retest_per_physician_comes_from_repeats_only() -> None:
    w = world(repeats={"ann": {2: 1, 3: 3, 4: 3}})

    report = agreement_report(round=w.round, n_boot=100)

    retest = dict(report.retest)
    assert list(retest) == ["ann"]
    assert retest["ann"].n == 3
    assert retest["ann"].exact_agreement.value == pytest.approx(2 / 3)
    assert report.counts["repeats"] == 3
    # Repeats stay out of the agreement between physicians.
    expected = {name: by_index(w, row) for name, row in RATINGS.items()}
    assert report.alpha.value == pytest.approx(krippendorff_alpha(expected))


def test_drift_and_pace_per_physician() -> None:
    w = world(seconds=12.0)

    report = agreement_report(round=w.round, n_boot=0)

    assert report.score_drift.n == 20
    assert report.time_drift.slope.value == pytest.approx(0.0, abs=1e-9)
    pace = {p.rater: p for p in report.pace}
    assert pace["ann"].n == 7 and pace["ann"].median_seconds == 12.0


def test_report_as_dict_names_every_figure_with_its_n() -> None:
    w = world()

    body = agreement_report(round=w.round, n_boot=50).as_dict()

    assert body["alpha"]["n"] == 6 and body["bootstrap"] == {"n_boot": 50, "seed": 0}
    # ann rated 6 images of the agreement set (and one outside it)
    assert body["kappa_matrix"]["n"][0][0] == 6
    assert body["turing_by_physician"][0]["group"] == "ann"


def test_reward_model_agreeing_with_one_physician_reaches_kappa_one_with_her() -> None:
    w = world()
    rm = version("rm", ModelKind.REWARD)
    # Expected scores near ann's ratings on the agreement set.
    score_images(rm, w.images, {0: 2.9, 1: 3.0, 2: 1.1, 3: 2.2, 4: 2.6, 5: 1.3})

    report = reward_ceiling_report(round=w.round, reward_model=rm, n_boot=100)

    rows = {r.rater: r for r in report.rows}
    assert report.note == ""
    assert report.n_items == 6 and report.n_scored == 6
    assert rows["ann"].model_kappa.value == pytest.approx(1.0)
    assert rows["ann"].model_kappa.n == 6
    expected = {name: by_index(w, row) for name, row in RATINGS.items()}
    k_ab = quadratic_kappa(expected["ann"], expected["bob"])
    k_ac = quadratic_kappa(expected["ann"], expected["cat"])
    assert rows["ann"].human_kappa == pytest.approx((k_ab + k_ac) / 2)
    assert rows["ann"].n_colleagues == 2
    assert report.human_mean_kappa is not None


def test_missing_scores_are_reported_with_how_to_get_them() -> None:
    w = world()
    rm = version("rm", ModelKind.REWARD)
    score_images(rm, w.images, {0: 2.9, 1: 3.0})

    report = reward_ceiling_report(round=w.round, reward_model=rm, n_boot=0)

    assert report.n_missing == 4
    assert "4 of 6 images in scope have no score from rm" in report.note
    assert "score round" in report.note


def test_without_any_reward_model_the_report_says_so() -> None:
    w = world()

    report = reward_ceiling_report(round=w.round, n_boot=0)

    assert report.reward_model is None
    assert report.note.startswith("No reward model has scored this round yet")
    assert all(r.model_kappa.value is None for r in report.rows)


def test_the_round_reward_model_is_the_default() -> None:
    w = world()
    rm = version("rm", ModelKind.REWARD)
    w.round.reward_model_version = rm
    w.round.save()

    assert reward_ceiling_report(round=w.round, n_boot=0).reward_model == {
        "id": rm.pk,
        "name": "rm",
    }


def test_spearman_estimate_has_a_fisher_interval_and_handles_constants() -> None:
    est = spearman_estimate([1, 2, 3, 4, 5, 6], [1.0, 2.5, 2.0, 4.0, 5.0, 6.0])

    assert est.value == pytest.approx(0.942857, abs=1e-6)
    assert est.ci_low < est.value < est.ci_high
    assert spearman_estimate([1, 1, 1], [1, 2, 3]).value is None
    assert spearman_estimate([1, 2], [1, 2]).note == "fewer than three items"
