"""Agreement statistics against hand-worked values, sklearn and simulated raters."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score

from annotations.stats import agreement
from annotations.stats.agreement import (
    NOTE_NO_OVERLAP,
    NOTE_NO_PAIRABLE,
    NOTE_NO_VARIATION,
    alpha_estimate,
    kappa_estimate,
    krippendorff_alpha,
    quadratic_kappa,
)
from annotations.stats.raters import (
    pairwise_kappa,
    rater_reliability,
    retest_agreement,
    wilson_estimate,
)

FIVE = (1, 2, 3, 4, 5)


def as_ratings(**rows: list[int | None]) -> dict[str, dict[int, int]]:
    return {
        name: {i: v for i, v in enumerate(row) if v is not None}
        for name, row in rows.items()
    }


def sk_kappa(a: dict[int, int], b: dict[int, int]) -> float:
    common = [i for i in a if i in b]
    return cohen_kappa_score(
        [a[i] for i in common],
        [b[i] for i in common],
        weights="quadratic",
        labels=[1, 2, 3],
    )


# --- Cohen's kappa -----------------------------------------------------------


def test_quadratic_kappa_matches_a_hand_computed_table() -> None:
    # a = 1 2 3 1, b = 1 3 3 2.  Squared differences 0 1 0 1 -> D_o = 2/4 = 0.5.
    # Marginals a: (.5, .25, .25), b: (.25, .25, .5) over scores 1, 2, 3.
    # D_e = sum_ij pa_i pb_j (i - j)^2
    #     = .5 * (0 + .25*1 + .5*4) + .25 * (.25*1 + 0 + .5*1) + .25 * (.25*4 + .25*1)
    #     = 1.125 + .1875 + .3125 = 1.625
    # kappa = 1 - 0.5 / 1.625 = 9/13.
    a = {0: 1, 1: 2, 2: 3, 3: 1}
    b = {0: 1, 1: 3, 2: 3, 3: 2}

    assert quadratic_kappa(a, b) == pytest.approx(9 / 13)
    assert quadratic_kappa(a, b) == pytest.approx(sk_kappa(a, b))


def test_quadratic_kappa_equals_sklearn_on_random_pairs_with_missing_ratings() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        a = {i: int(rng.integers(1, 4)) for i in range(40) if rng.random() < 0.8}
        b = {i: int(rng.integers(1, 4)) for i in range(40) if rng.random() < 0.8}
        assert quadratic_kappa(a, b) == pytest.approx(sk_kappa(a, b))


def test_kappa_uses_only_items_both_raters_rated() -> None:
    a = {0: 1, 1: 2, 2: 3, 3: 1, "only_a": 3}
    b = {0: 1, 1: 3, 2: 3, 3: 2, "only_b": 1}

    est = kappa_estimate(a, b, n_boot=0)

    assert est.n == 4
    assert est.value == pytest.approx(9 / 13)


def test_a_constant_rater_against_a_varying_one_has_kappa_zero_like_sklearn() -> None:
    # With a point-mass marginal the chance table is the observed table,
    # so D_e = D_o and kappa = 0 whatever the other rater did.
    constant = {i: 2 for i in range(6)}
    varying = {0: 1, 1: 2, 2: 3, 3: 3, 4: 1, 5: 2}

    assert quadratic_kappa(constant, varying) == pytest.approx(0.0)
    assert sk_kappa(constant, varying) == pytest.approx(0.0)


def test_two_raters_constant_on_the_same_score_have_undefined_kappa() -> None:
    same = {i: 3 for i in range(5)}

    est = kappa_estimate(same, dict(same))

    assert est.value is None and est.n == 5
    assert est.note == NOTE_NO_VARIATION
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(sk_kappa(same, dict(same)))


def test_two_raters_constant_on_different_scores_have_kappa_zero() -> None:
    assert quadratic_kappa({0: 1, 1: 1}, {0: 3, 1: 3}) == pytest.approx(0.0)


def test_raters_without_common_items_have_no_kappa() -> None:
    est = kappa_estimate({1: 1, 2: 2}, {3: 1, 4: 3})

    assert est.value is None and est.n == 0 and est.note == NOTE_NO_OVERLAP


def test_a_score_outside_the_scale_is_refused_naming_rater_item_and_value() -> None:
    with pytest.raises(ValueError, match=r"item 7: score 4 is not one of \[1, 2, 3\]"):
        quadratic_kappa({7: 4}, {7: 1})


# --- bootstrap ---------------------------------------------------------------


def test_kappa_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 4, 60)
    a = {i: int(v) for i, v in enumerate(truth)}
    b = {i: int(v if rng.random() < 0.7 else rng.integers(1, 4)) for i, v in a.items()}

    first = kappa_estimate(a, b, n_boot=400, seed=5)
    again = kappa_estimate(a, b, n_boot=400, seed=5)
    other = kappa_estimate(a, b, n_boot=400, seed=6)

    assert first == again
    assert first.ci_low != other.ci_low or first.ci_high != other.ci_high
    assert first.ci_low < first.value < first.ci_high
    assert first.n_boot == 400
    assert kappa_estimate(a, b, n_boot=0).ci_low is None


def test_kappa_bootstrap_resamples_equal_sklearn_on_the_resampled_items() -> None:
    # The vectorised resampling must give exactly what recomputing kappa with
    # sklearn on each resampled list of items gives.
    rng = np.random.default_rng(1)
    a = {i: int(rng.integers(1, 4)) for i in range(25)}
    b = {i: int(min(3, max(1, v + rng.integers(-1, 2)))) for i, v in a.items()}
    items = list(a)
    counts = next(agreement.bootstrap_counts(len(items), 50, seed=9))
    expected = []
    for row in counts:
        picked = [
            item for item, c in zip(items, row, strict=True) for _ in range(int(c))
        ]
        expected.append(
            cohen_kappa_score(
                [a[i] for i in picked],
                [b[i] for i in picked],
                weights="quadratic",
                labels=[1, 2, 3],
            )
        )

    est = kappa_estimate(a, b, n_boot=50, seed=9, level=0.9)

    low, high = np.nanpercentile(expected, [5, 95])
    assert est.ci_low == pytest.approx(low)
    assert est.ci_high == pytest.approx(high)


def test_alpha_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    ratings = krippendorff_example()

    est = alpha_estimate(ratings, categories=FIVE, n_boot=500, seed=2)

    assert est == alpha_estimate(ratings, categories=FIVE, n_boot=500, seed=2)
    assert est.ci_low < est.value <= est.ci_high <= 1.0
    assert est.n == 11


# --- Krippendorff's alpha ----------------------------------------------------


def krippendorff_example() -> dict[str, dict[int, int]]:
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', 4 observers
    by 12 units, values 1 to 5, with missing values; published alphas: nominal
    0.743, ordinal 0.815, interval 0.849."""
    return as_ratings(
        A=[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        B=[1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        C=[None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        D=[1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    )


def test_ordinal_alpha_reproduces_krippendorffs_published_example() -> None:
    # Unit 12 has one value and drops out; 11 units, n = 40 pairable values.
    # Coincidences (c<k; o is symmetric): o11=7 o12=4/3 o13=1/3 o14=1/3,
    # o22=10 o23=4/3 o24=1/3, o33=8 o34=1/3, o44=4, o55=3;
    # so n_c = 9, 13, 10, 5, 3.
    # Ordinal d_ck = sum_{g=c..k} n_g - (n_c + n_k)/2:
    # d12=11 d13=22.5 d14=30 d15=34 d23=11.5 d24=19 d25=23 d34=7.5 d35=11.5 d45=4.
    # sum_{c<k} o d^2 = 4/3*121 + 1/3*506.25 + 1/3*900 + 4/3*132.25 + 1/3*361
    #                 + 1/3*56.25 = 945.5
    # sum_{c<k} n_c n_k d^2 = 117*121 + 90*506.25 + 45*900 + 27*1156 + 130*132.25
    #                 + 65*361 + 39*529 + 50*56.25 + 30*132.25 + 15*16 = 199740
    # alpha = 1 - (40 - 1) * 945.5 / 199740 = 0.815388
    ratings = krippendorff_example()

    assert krippendorff_alpha(ratings, categories=FIVE) == pytest.approx(
        1 - 39 * 945.5 / 199740
    )
    assert krippendorff_alpha(ratings, categories=FIVE) == pytest.approx(
        0.815, abs=5e-4
    )


def test_interval_and_nominal_alpha_reproduce_the_published_example() -> None:
    ratings = krippendorff_example()

    interval = krippendorff_alpha(ratings, metric="interval", categories=FIVE)
    nominal = krippendorff_alpha(ratings, metric="nominal", categories=FIVE)

    assert interval == pytest.approx(0.849, abs=5e-4)
    assert nominal == pytest.approx(0.743, abs=5e-4)


def test_ordinal_alpha_on_a_small_one_to_three_example_worked_by_hand() -> None:
    # item 0: 1,1   -> o11 += 2
    # item 1: 2,3,3 -> m=3; ordered pairs 2-3 x2, 3-2 x2, 3-3 x2, each /(m-1)=2:
    #                  o23 += 1, o32 += 1, o33 += 1
    # item 2: 3     -> one rating, not pairable, drops out
    # item 3: 1,2   -> o12 += 1, o21 += 1
    # o = [[2,1,0],[1,0,1],[0,1,1]], n_c = (3, 2, 2), n = 7
    # d12 = 5 - 2.5 = 2.5, d13 = 7 - 2.5 = 4.5, d23 = 4 - 2 = 2
    # sum_{c<k} o d^2 = 1*6.25 + 0*20.25 + 1*4 = 10.25
    # sum_{c<k} n n d^2 = 6*6.25 + 6*20.25 + 4*4 = 175
    # alpha = 1 - 6 * 10.25 / 175 = 227/350
    ratings = as_ratings(
        A=[1, 2, 3, 1],
        B=[1, 3, None, 2],
        C=[None, 3, None, None],
    )

    est = alpha_estimate(ratings, n_boot=0)

    assert est.value == pytest.approx(227 / 350)
    assert est.n == 3


def test_two_raters_without_missing_ratings_interval_alpha_is_near_kappa() -> None:
    # Interval alpha and quadratic kappa differ only in how chance disagreement
    # is estimated (pooled marginals and n - 1, against each rater's own
    # marginals and n), so with 400 items they lie within 0.01.
    rng = np.random.default_rng(4)
    truth = rng.integers(1, 4, 400)
    a = {i: int(v) for i, v in enumerate(truth)}
    b = {i: int(v if rng.random() < 0.6 else rng.integers(1, 4)) for i, v in a.items()}

    alpha = krippendorff_alpha({"a": a, "b": b}, metric="interval")

    assert alpha == pytest.approx(quadratic_kappa(a, b), abs=0.01)


def test_alpha_is_undefined_when_every_rating_is_the_same() -> None:
    est = alpha_estimate(as_ratings(A=[2, 2, 2], B=[2, 2, None]))

    assert est.value is None and est.note == NOTE_NO_VARIATION and est.n == 2


def test_alpha_of_one_rater_or_no_shared_item_is_undefined() -> None:
    one = alpha_estimate(as_ratings(A=[1, 2, 3]))
    apart = alpha_estimate(as_ratings(A=[1, 2, None, None], B=[None, None, 3, 1]))

    assert one.value is None and one.n == 0 and one.note == NOTE_NO_PAIRABLE
    assert apart.value is None and apart.note == NOTE_NO_PAIRABLE


def test_alpha_rejects_an_unknown_metric() -> None:
    with pytest.raises(ValueError, match="metric 'ratio'"):
        krippendorff_alpha(krippendorff_example(), metric="ratio", categories=FIVE)  # type: ignore[arg-type]


# --- matrices and reliability -------------------------------------------------


def test_pairwise_kappa_matrix_is_symmetric_with_common_item_counts() -> None:
    ratings = krippendorff_example()

    matrix = pairwise_kappa(ratings, categories=FIVE)

    assert matrix.raters == ["A", "B", "C", "D"]
    assert matrix.n[0] == [9, 9, 8, 9]
    assert matrix.n[1][1] == 11
    for i in range(4):
        assert matrix.kappa[i][i] is None
        for j in range(4):
            assert matrix.kappa[i][j] == matrix.kappa[j][i]
    a, b = ratings["A"], ratings["B"]
    common = [i for i in a if i in b]
    assert matrix.kappa[0][1] == pytest.approx(
        cohen_kappa_score(
            [a[i] for i in common], [b[i] for i in common], weights="quadratic"
        )
    )


def test_pairwise_kappa_of_one_rater_is_a_one_by_one_matrix() -> None:
    matrix = pairwise_kappa({"solo": {1: 2, 2: 3}})

    assert matrix.kappa == [[None]] and matrix.n == [[2]]


def test_between_reliability_is_the_item_weighted_mean_kappa_with_others() -> None:
    ratings = krippendorff_example()
    m = pairwise_kappa(ratings, categories=FIVE)

    rel = rater_reliability(ratings, categories=FIVE, min_overlap=1)

    expected_a = (9 * m.kappa[0][1] + 8 * m.kappa[0][2] + 9 * m.kappa[0][3]) / 26
    assert rel["A"] == pytest.approx(expected_a)
    assert set(rel) == {"A", "B", "C", "D"}


def test_reliability_leaves_out_pairs_under_min_overlap_and_lone_raters() -> None:
    ratings = krippendorff_example()
    ratings["E"] = {11: 1}  # shares one item with C and D

    rel = rater_reliability(ratings, categories=FIVE, min_overlap=2)

    assert "E" not in rel
    assert rater_reliability({"solo": {1: 1, 2: 3}}) == {}


def test_retest_reliability_needs_repeats_and_enough_of_them() -> None:
    first = as_ratings(A=[1, 2, 3, 1, 2, 3], B=[1, 2, 3, 1, 2, 3])
    repeats = as_ratings(A=[1, 2, 3, 1, 2, 3], B=[1, 2, None, None, None, None])

    rel = rater_reliability(first, repeats=repeats, method="retest", min_overlap=3)

    assert rel == {"A": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="needs repeats"):
        rater_reliability(first, method="retest")


def test_retest_agreement_reports_kappa_exact_share_and_changes() -> None:
    first = as_ratings(A=[1, 2, 3, 1, 2, 3, 3, 2])
    repeats = as_ratings(A=[1, 2, 3, 2, 2, None, 3, 3])

    result = retest_agreement(first, repeats, n_boot=200)["A"]

    # Repeated items 0..4, 6, 7: same score on 5 of 7; changes 1→2 and 2→3.
    assert result.n == 7
    assert result.exact_agreement.value == pytest.approx(5 / 7)
    assert result.exact_agreement.ci_low < 5 / 7 < result.exact_agreement.ci_high
    assert result.changes == {"1→2": 1, "2→3": 1}
    assert result.mean_abs_difference == pytest.approx(2 / 7)
    assert result.kappa.value == pytest.approx(
        sk_kappa({i: first["A"][i] for i in repeats["A"]}, repeats["A"])
    )


def test_wilson_estimate_matches_the_known_interval() -> None:
    est = wilson_estimate(8, 10)

    assert est.ci_low == pytest.approx(0.4902, abs=1e-4)
    assert est.ci_high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_estimate(0, 0).value is None


# --- simulated raters ---------------------------------------------------------


def simulate(
    noise: dict[str, float], n_items: int, seed: int
) -> tuple[dict[str, dict[int, int]], dict[str, dict[int, int]]]:
    """Raters see a latent quality in [0.5, 3.5] plus their own Gaussian noise,
    rounded to 1-3; the repeat draws the noise again."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.5, 3.5, n_items)

    def rate(sigma: float) -> dict[int, int]:
        seen = np.clip(np.rint(truth + rng.normal(0, sigma, n_items)), 1, 3)
        return {i: int(v) for i, v in enumerate(seen)}

    first = {name: rate(sigma) for name, sigma in noise.items()}
    repeats = {name: rate(sigma) for name, sigma in noise.items()}
    return first, repeats


def test_simulated_raters_reliability_recovers_the_noise_ordering() -> None:
    noise = {"careful": 0.1, "good": 0.4, "hurried": 0.8, "random": 2.5}

    first, repeats = simulate(noise, 400, seed=11)
    between = rater_reliability(first)
    retest = rater_reliability(first, repeats=repeats, method="retest")
    retests = retest_agreement(first, repeats, n_boot=0)

    order = list(noise)
    assert sorted(order, key=lambda r: -between[r]) == order
    assert sorted(order, key=lambda r: -retest[r]) == order
    exact = [retests[r].exact_agreement.value for r in order]
    assert exact == sorted(exact, reverse=True)


def test_simulated_groups_alpha_falls_as_noise_rises() -> None:
    alphas = []
    for sigma in (0.1, 0.5, 1.0, 2.5):
        ratings, _ = simulate({f"r{i}": sigma for i in range(4)}, 300, seed=12)
        # Each rater misses a fifth of the items.
        rng = np.random.default_rng(13)
        for scores in ratings.values():
            for item in list(scores):
                if rng.random() < 0.2:
                    del scores[item]
        alphas.append(alpha_estimate(ratings, n_boot=200))

    values = [a.value for a in alphas]
    assert values == sorted(values, reverse=True)
    # Neighbouring noise levels are told apart: the intervals do not overlap.
    for better, worse in zip(alphas, alphas[1:], strict=False):
        assert better.ci_low > worse.ci_high
