"""What each objective fine-tunes on, from what physicians said of the images.

One set of rules for the platform's fine-tune jobs and the experiments, so a
result measured in an experiment is a result about the product. Torch-free.

An image's *value* is its physicians' mean rating mapped to 0-1,
``(mean - 1) / 2``, or, where nobody rated it, the reward model's score.

- ``weighted``: every image, its value normalised so each prompt's values
  average 1 (how hard a prompt is drops out; how good each image is stays);
- ``filtered``: the images whose value reaches ``filter_threshold`` (0.75
  keeps what one physician rated 3), counted equally;
- ``kto``: rated images labelled from their mean rating (above 2 desirable,
  below 2 undesirable, weighted by the distance from 2; exactly 2 as
  ``kto_middle`` says); unrated images take the label of their expected
  rating ``1 + 2 * reward`` with ``kto_unrated_weight`` on top;
- ``dpo``: every two images of one prompt that one physician rated
  differently in one round, the higher chosen (no pair across physicians);
- ``none``: every image, equally (the control).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TypeVar

from .objectives import OBJECTIVES, kto_label

T = TypeVar("T")

DEFAULT_FILTER_THRESHOLD = 0.75
DEFAULT_KTO_UNRATED_WEIGHT = 0.5


@dataclass(frozen=True)
class FeedbackImage:
    """One generated image of the parent and what is known of it."""

    path: str
    prompt: str
    modality: str
    mean_rating: float | None = None
    reward: float | None = None

    @property
    def value(self) -> float:
        if self.mean_rating is not None:
            return (self.mean_rating - 1.0) / 2.0
        return float(self.reward or 0.0)


@dataclass(frozen=True)
class Judgement:
    """One physician's rating of one image, for preference pairs."""

    rater: Hashable
    group: Hashable  # ratings pair up only within a group (round, prompt)
    image: FeedbackImage
    score: int


@dataclass
class FeedbackRows:
    """The rows of the CSV an objective trains on."""

    kind: str  # "weights" (weights_csv) or "pairs" (pairs_csv)
    header: list[str]
    rows: list[tuple[object, ...]] = field(default_factory=list)

    def write(self, path: Path) -> Path:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(self.header)
            writer.writerows(self.rows)
        tmp.replace(path)
        return path


def normalise_weights_per_prompt(rows: Sequence[tuple[str, float]]) -> list[float]:
    """Scale weights so each prompt's weights average 1 (all-zero groups stay 0).

    Comparing samples of the same prompt removes how hard a prompt is from
    the weight, leaving how good each sample is.
    """
    groups: dict[str, list[float]] = defaultdict(list)
    for prompt, weight in rows:
        if weight < 0 or not math.isfinite(weight):
            from .errors import EngineError

            raise EngineError(f"weight {weight} for prompt {prompt!r} must be >= 0")
        groups[prompt].append(weight)
    means = {p: sum(w) / len(w) for p, w in groups.items()}
    return [w / means[p] if means[p] > 0 else 0.0 for p, w in rows]


def preference_pairs(
    ratings: Sequence[T],
    *,
    score: Callable[[T], int],
    image: Callable[[T], Hashable],
) -> Iterator[tuple[T, T]]:
    """(chosen, rejected) of one physician's ratings of one prompt.

    Every two ratings of different images with different scores give one
    pair, in the order given; equal scores give none.
    """
    for first, second in combinations(ratings, 2):
        if image(first) == image(second) or score(first) == score(second):
            continue
        yield (first, second) if score(first) > score(second) else (second, first)


def _weights_header(with_label: bool = False) -> list[str]:
    return ["path", "Text", "modality", "weight"] + (["label"] if with_label else [])


def objective_rows(
    objective: str,
    images: Sequence[FeedbackImage],
    *,
    judgements: Sequence[Judgement] = (),
    filter_threshold: float = DEFAULT_FILTER_THRESHOLD,
    kto_middle: str = "neutral",
    kto_middle_weight: float = 0.5,
    kto_unrated_weight: float = DEFAULT_KTO_UNRATED_WEIGHT,
) -> FeedbackRows:
    """The training rows of ``objective`` (see the module docstring)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    if objective == "dpo":
        header = ["chosen_path", "rejected_path", "Text", "modality", "weight"]
        out = FeedbackRows("pairs", header)
        grouped: dict[tuple[Hashable, Hashable], list[Judgement]] = defaultdict(list)
        for j in judgements:
            grouped[(j.group, j.rater)].append(j)
        # Physicians who made the same judgement weigh it together.
        counts: dict[tuple[str, str, str, str], int] = defaultdict(int)
        for group in grouped.values():
            for chosen, rejected in preference_pairs(
                group, score=lambda j: j.score, image=lambda j: j.image.path
            ):
                key = (
                    chosen.image.path,
                    rejected.image.path,
                    chosen.image.prompt,
                    chosen.image.modality,
                )
                counts[key] += 1
        out.rows = [(*key, str(n)) for key, n in counts.items()]
        return out
    if objective == "kto":
        out = FeedbackRows("weights", _weights_header(with_label=True))
        for im in images:
            rated = im.mean_rating is not None
            mean = (
                im.mean_rating
                if im.mean_rating is not None
                else 1.0 + 2.0 * float(im.reward or 0.0)
            )
            labelled = kto_label(
                min(max(float(mean), 1.0), 3.0),
                middle=kto_middle,
                middle_weight=kto_middle_weight,
            )
            if labelled is None:
                continue
            label, weight = labelled
            weight *= 1.0 if rated else kto_unrated_weight
            if weight > 0:
                out.rows.append(
                    (im.path, im.prompt, im.modality, f"{weight:.6f}", f"{label:g}")
                )
        return out
    out = FeedbackRows("weights", _weights_header())
    if objective == "filtered":
        out.rows = [
            (im.path, im.prompt, im.modality, "1")
            for im in images
            if im.value >= filter_threshold
        ]
    elif objective == "none":
        out.rows = [(im.path, im.prompt, im.modality, "1") for im in images]
    else:
        weights = normalise_weights_per_prompt([(im.prompt, im.value) for im in images])
        out.rows = [
            (im.path, im.prompt, im.modality, f"{w:.6f}")
            for im, w in zip(images, weights, strict=True)
        ]
    return out
