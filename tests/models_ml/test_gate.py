"""The promotion gate: per-arm shares, paired tests, the verdict, and what it
changes: the new version's gate status and what generation defaults to."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Rating, Role, Round, RoundStatus
from annotations.services.rounds import round_close
from models_ml.gate import comparison_verdict
from models_ml.models import Comparison, GateStatus, ModelKind, ModelVersion
from models_ml.selectors import default_diffusion_version
from models_ml.services.rounds import round_abandon
from tests.factories import ImageFactory, UserFactory

from .ml_page_data import diffusion

pytestmark = pytest.mark.django_db

PROMPTS = ("CT: a", "CT: b")


def comparison_round(
    admin_user,
    *,
    outcomes: dict[str, list[int]],
    raters: list | None = None,
    best_of_n: int | None = None,
) -> Comparison:
    """A comparison whose arms' images are rated with ``outcomes[arm]``: one
    score per seed (or per seed and rater, as lists of tuples)."""
    parent = diffusion("parent")
    candidate = diffusion("candidate", parent=parent, gate=GateStatus.PENDING)
    control = (
        diffusion("control", parent=parent, is_control=True)
        if "control" in outcomes
        else None
    )
    rnd = Round.objects.create(
        name="comparison",
        status=RoundStatus.RATING,
        model_version=candidate,
        compare_model_version=parent,
        created_by=admin_user,
    )
    comparison = Comparison.objects.create(
        round=rnd,
        candidate=candidate,
        parent=parent,
        control=control,
        best_of_n=best_of_n,
    )
    version_of = {
        "candidate": candidate,
        "parent": parent,
        "control": control,
        "best_of_n": parent,
    }
    raters = raters or [UserFactory(role=Role.PHYSICIAN)]
    for arm, scores in outcomes.items():
        for seed, score in enumerate(scores):
            image = ImageFactory(
                dataset=None,
                source="generated",
                model_version=version_of[arm],
                prompt=PROMPTS[seed % 2],
                generated_for_round=rnd,
                generation={"arm": arm, "seed": 1000 + seed, "request_seed": seed},
            )
            per_rater = score if isinstance(score, tuple) else (score,)
            for rater, value in zip(raters, per_rater, strict=False):
                if value:
                    Rating.objects.create(
                        rater=rater, image=image, round=rnd, score=value
                    )
    return comparison


def arm(verdict, name):
    return next(a for a in verdict.arms if a.arm == name)


def test_a_clear_win_over_parent_and_control_promotes_once_the_round_closes(
    admin_user,
):
    comparison = comparison_round(
        admin_user,
        outcomes={
            "candidate": [3] * 30 + [1] * 10,
            "parent": [1] * 30 + [3] * 10,
            "control": [1] * 28 + [3] * 12,
        },
    )

    live = comparison_verdict(comparison)

    assert live.promoted is True and not live.decided
    assert "beat the parent and control at the 0.05 level" in live.reason
    candidate = arm(live, "candidate")
    assert (candidate.ratings, candidate.rated_3, candidate.share_3) == (40, 30, 0.75)
    low, high = candidate.wilson95
    assert low < 0.75 < high
    assert candidate.vs_parent["better"] == 30 and candidate.vs_parent["worse"] == 10
    assert candidate.vs_parent["points"] == 50.0
    assert candidate.vs_control["significant"]
    assert arm(live, "parent").vs_parent is None
    comparison.candidate.refresh_from_db()
    assert comparison.candidate.gate == GateStatus.PENDING

    round_close(round=comparison.round, actor=admin_user)

    comparison.refresh_from_db()
    comparison.candidate.refresh_from_db()
    assert comparison.decided_at is not None
    assert comparison.verdict["promoted"] is True
    assert comparison.candidate.gate == GateStatus.PROMOTED
    assert default_diffusion_version() == comparison.candidate
    # Ratings that arrive later do not change a recorded verdict.
    Rating.objects.filter(round=comparison.round).update(score=1)
    assert comparison_verdict(comparison).promoted is True


def test_beating_the_parent_but_not_the_control_is_not_promoted(admin_user):
    comparison = comparison_round(
        admin_user,
        outcomes={
            "candidate": [3] * 30 + [1] * 10,
            "parent": [1] * 30 + [3] * 10,
            "control": [3] * 30 + [1] * 10,
        },
    )

    round_close(round=comparison.round, actor=admin_user)

    comparison.refresh_from_db()
    verdict = comparison_verdict(comparison)
    assert verdict.decided and verdict.promoted is False
    assert verdict.reason.startswith("did not beat the control (vs control: +0.0")
    comparison.candidate.refresh_from_db()
    assert comparison.candidate.gate == GateStatus.FAILED
    # A failed version stays in the lineage but is never the default.
    assert default_diffusion_version() == comparison.parent


def test_without_a_control_beating_the_parent_is_enough(admin_user):
    comparison = comparison_round(
        admin_user,
        outcomes={"candidate": [3] * 20 + [2] * 4, "parent": [2] * 20 + [3] * 4},
    )
    verdict = comparison_verdict(comparison)
    assert verdict.promoted is True and "beat the parent at" in verdict.reason
    assert arm(verdict, "candidate").vs_control is None


def test_a_small_round_is_not_enough_evidence(admin_user):
    comparison = comparison_round(
        admin_user,
        outcomes={"candidate": [3, 3, 3, 1], "parent": [1, 1, 3, 1]},
    )
    verdict = comparison_verdict(comparison)
    # Two seeds gained, none lost: p = 0.5.
    assert arm(verdict, "candidate").vs_parent["p_value"] == pytest.approx(0.5)
    assert verdict.promoted is False


def test_no_ratings_yet_gives_no_verdict(admin_user):
    comparison = comparison_round(
        admin_user, outcomes={"candidate": [0, 0], "parent": [0, 0], "control": [0, 0]}
    )
    verdict = comparison_verdict(comparison)
    assert verdict.promoted is None and "not enough ratings" in verdict.reason
    assert arm(verdict, "candidate").share_3 is None


def test_seeds_pair_only_where_both_arms_were_rated(admin_user):
    comparison = comparison_round(
        admin_user,
        outcomes={"candidate": [3, 3, 0, 3], "parent": [1, 0, 1, 1]},
    )
    test = arm(comparison_verdict(comparison), "candidate").vs_parent
    assert (test["pairs"], test["better"], test["worse"]) == (2, 2, 0)


def test_several_raters_per_image_compare_shares_of_threes(admin_user):
    raters = [UserFactory(role=Role.PHYSICIAN) for _ in range(2)]
    comparison = comparison_round(
        admin_user,
        raters=raters,
        outcomes={
            "candidate": [(3, 3), (3, 1), (3, 3)],
            "parent": [(3, 1), (3, 1), (1, 1)],
        },
    )
    verdict = comparison_verdict(comparison)
    candidate = arm(verdict, "candidate")
    assert (candidate.ratings, candidate.rated_3) == (6, 5)
    test = candidate.vs_parent
    assert (test["better"], test["worse"]) == (2, 0)
    assert test["difference"] == pytest.approx((0.5 + 0 + 1) / 3)


def test_the_best_of_n_arm_is_tested_against_the_parent_and_not_gated(admin_user):
    comparison = comparison_round(
        admin_user,
        best_of_n=4,
        outcomes={
            "candidate": [3] * 10,
            "parent": [1] * 10,
            "best_of_n": [3] * 9 + [1],
        },
    )
    verdict = comparison_verdict(comparison)
    best = arm(verdict, "best_of_n")
    assert best.label == "Parent, best of 4 by reward"
    assert best.vs_parent["better"] == 9
    assert [a.arm for a in verdict.arms] == ["candidate", "parent", "best_of_n"]


def test_an_abandoned_comparison_leaves_its_version_untested(admin_user):
    comparison = comparison_round(
        admin_user, outcomes={"candidate": [0], "parent": [0]}
    )
    round_abandon(round=comparison.round, reason="wrong prompts", actor=admin_user)
    comparison.candidate.refresh_from_db()
    comparison.refresh_from_db()
    assert comparison.candidate.gate == GateStatus.UNTESTED
    assert comparison.decided_at is None


def test_a_control_is_never_promoted_by_the_database():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(
            name="c",
            kind=ModelKind.DIFFUSION,
            path="/c",
            is_control=True,
            gate=GateStatus.PROMOTED,
        )


def test_the_api_and_the_dashboard_show_the_verdict(admin_user, client):
    comparison = comparison_round(
        admin_user,
        outcomes={
            "candidate": [3] * 30 + [1] * 10,
            "parent": [1] * 30 + [3] * 10,
            "control": [1] * 30 + [3] * 10,
        },
    )
    researcher = UserFactory(role=Role.RESEARCHER)
    client.force_login(researcher)
    listed = client.get(reverse("api-comparisons")).json()
    assert [c["id"] for c in listed] == [comparison.pk]
    detail = client.get(reverse("api-comparison-detail", args=[comparison.pk])).json()
    assert detail["candidate_gate"] == "pending"
    assert detail["verdict"]["promoted"] is True
    assert detail["verdict"]["decided"] is False
    arms = {a["arm"]: a for a in detail["verdict"]["arms"]}
    assert arms["candidate"]["vs_control"]["points"] == 50.0
    assert client.get(reverse("api-comparison-detail", args=[999])).status_code == 404
    physician = UserFactory(role=Role.PHYSICIAN)
    client.force_login(physician)
    assert client.get(reverse("api-comparisons")).status_code == 403

    client.force_login(admin_user)
    html = client.get(reverse("ml-dashboard")).content.decode()
    assert "Provisional (round open)" in html
    assert "Control (same fine-tune, no feedback)" in html
    assert "+50.0 points" in html
    # The gate replaces the interval banner for a comparison round.
    assert 'data-testid="verdict"' not in html
