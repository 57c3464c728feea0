"""What each objective trains on: the platform's and the experiments' one rule set."""

from __future__ import annotations

import pytest

from models_ml.engine.feedback_data import (
    FeedbackImage,
    Judgement,
    objective_rows,
    preference_pairs,
)


def image(name: str, prompt: str = "CT: a", **known: float | None) -> FeedbackImage:
    return FeedbackImage(path=f"/{name}.png", prompt=prompt, modality="CT", **known)


IMAGES = [
    image("three", mean_rating=3.0),
    image("two", mean_rating=2.0),
    image("one", mean_rating=1.0),
    image("sure", reward=0.9),
    image("unsure", reward=0.5),
    image("other", prompt="CT: b", mean_rating=3.0),
]


def paths(rows) -> list[str]:
    return [row[0].strip("/").removesuffix(".png") for row in rows.rows]


def test_weighted_normalises_each_prompts_values_to_average_one() -> None:
    rows = objective_rows("weighted", IMAGES)
    weights = {p: float(r[3]) for p, r in zip(paths(rows), rows.rows, strict=True)}
    # Prompt a: values 1, 0.5, 0, 0.9, 0.5 (mean 0.58); prompt b: one image.
    assert weights["three"] == pytest.approx(1 / 0.58)
    assert weights["one"] == 0.0 and weights["other"] == 1.0
    assert rows.header == ["path", "Text", "modality", "weight"]


def test_filtered_keeps_rated_threes_and_confident_rewards_counted_equally() -> None:
    rows = objective_rows("filtered", IMAGES, filter_threshold=0.75)
    assert paths(rows) == ["three", "sure", "other"]
    assert {r[3] for r in rows.rows} == {"1"}


def test_none_keeps_every_image_whatever_was_said_of_it() -> None:
    unknown = [image("x"), *IMAGES]
    rows = objective_rows("none", unknown)
    assert len(rows.rows) == 7 and {r[3] for r in rows.rows} == {"1"}


@pytest.mark.parametrize(
    ("middle", "expected"),
    [
        ("neutral", {"three": (1.0, 1.0), "two": (1.0, 0.0), "one": (1.0, -1.0)}),
        ("dropped", {"three": (1.0, 1.0), "one": (1.0, -1.0)}),
        ("weighted", {"three": (1.0, 1.0), "two": (0.5, 1.0), "one": (1.0, -1.0)}),
    ],
)
def test_kto_labels_rated_images_and_gives_the_unrated_a_lower_weight(
    middle, expected
) -> None:
    rows = objective_rows("kto", IMAGES, kto_middle=middle, kto_unrated_weight=0.5)
    labelled = {
        p: (float(r[3]), float(r[4]))
        for p, r in zip(paths(rows), rows.rows, strict=True)
    }
    for name, value in expected.items():
        assert labelled[name] == pytest.approx(value)
    if middle == "dropped":
        assert "two" not in labelled and "unsure" not in labelled
    # Reward 0.9 means an expected rating of 2.8: desirable, weight 0.8 x 0.5.
    assert labelled["sure"] == pytest.approx((0.4, 1.0))
    assert rows.header[-1] == "label"


def test_dpo_pairs_form_within_one_physicians_ratings_of_one_prompt() -> None:
    a3, a1, a2 = image("a3"), image("a1"), image("a2")
    b3 = image("b3", prompt="CT: b")
    judgements = [
        Judgement("dr_a", "CT: a", a3, 3),
        Judgement("dr_a", "CT: a", a1, 1),
        Judgement("dr_a", "CT: a", a2, 1),
        Judgement("dr_b", "CT: a", a2, 3),
        Judgement("dr_a", "CT: b", b3, 3),
    ]
    judgements.append(Judgement("dr_b", "CT: a", a1, 1))
    rows = objective_rows("dpo", [], judgements=judgements)
    pairs = {(c.strip("/")[:2], r.strip("/")[:2]): w for c, r, _, _, w in rows.rows}
    # dr_a: 3 over both 1s (the 1s tie); dr_b: 3 over 1 on a2 and a1. The
    # pair both physicians gave is one row that weighs two.
    assert pairs == {("a3", "a1"): "1", ("a3", "a2"): "1", ("a2", "a1"): "1"}
    assert rows.kind == "pairs" and rows.header[:2] == ["chosen_path", "rejected_path"]
    agreeing = objective_rows(
        "dpo",
        [],
        judgements=[
            Judgement(r, "g", im, s) for r in ("x", "y") for im, s in ((a3, 3), (a1, 1))
        ],
    )
    assert [row[-1] for row in agreeing.rows] == ["2"]


def test_preference_pairs_skip_ties_and_the_same_image_twice() -> None:
    ratings = [("x", 3), ("x", 1), ("y", 2), ("z", 2)]
    pairs = list(preference_pairs(ratings, score=lambda r: r[1], image=lambda r: r[0]))
    assert pairs == [
        (("x", 3), ("y", 2)),
        (("x", 3), ("z", 2)),
        (("y", 2), ("x", 1)),
        (("z", 2), ("x", 1)),
    ]


def test_an_unknown_objective_is_refused() -> None:
    with pytest.raises(ValueError, match="objective 'ppo'"):
        objective_rows("ppo", IMAGES)
