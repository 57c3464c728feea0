"""The agreement page in chromium, on a simulated round a study section might see.

Four physicians of increasing noise rate 60 images (two modalities, 12 real
controls, an agreement set of 36); three see some images again; a reward
model scored the round.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from annotations.models import Role
from models_ml.models import ModelKind
from tests.annotations.rater_data import rated_round, score_images, version
from tests.factories import UserFactory

from .conftest import SHOTS

NOISE = {"dr_adams": 0.25, "dr_baker": 0.4, "dr_chen": 0.6, "dr_diaz": 1.1}


def _simulated_round() -> Any:
    rng = np.random.default_rng(7)
    n = 60
    real = set(range(12))
    truth = rng.uniform(0.6, 3.4, n)
    truth[list(real)] += 0.5  # real images look better
    agreement = set(range(36))
    ratings: dict[str, list[int | None]] = {}
    times: dict[str, list[float]] = {}
    repeats: dict[str, dict[int, int]] = {}
    for k, (name, sigma) in enumerate(NOISE.items()):
        seen = np.clip(np.rint(truth + rng.normal(0, sigma, n)), 1, 3).astype(int)
        row: list[int | None] = [
            int(s) if i in agreement or rng.random() < 0.5 else None
            for i, s in enumerate(seen)
        ]
        ratings[name] = row
        if k < 3:
            again = rng.choice([i for i, s in enumerate(row) if s is not None], 10)
            repeats[name] = {
                int(i): int(np.clip(np.rint(truth[i] + rng.normal(0, sigma)), 1, 3))
                for i in again
            }
        count = sum(s is not None for s in row) + len(repeats.get(name, {}))
        # Faster as the session goes on, with an occasional interruption.
        times[name] = list(
            np.maximum(2, 14 - 0.08 * np.arange(count) + rng.normal(0, 2, count))
        )
    w = rated_round(
        ratings=ratings,
        real=real,
        controls=real,
        agreement_set=agreement,
        modalities={i: "fundus" if i % 2 else "chest_xray" for i in range(n)},
        repeats=repeats,
        times=times,
        name="Round 3 · retina tuned 1 vs base",
    )
    rm = version("reward #2 (240 ratings)", ModelKind.REWARD)
    expected = np.clip(truth + rng.normal(0, 0.45, n), 1, 3)
    score_images(rm, w.images, {i: float(expected[i]) for i in range(30)})
    w.round.reward_model_version = rm
    w.round.save()
    return w


def test_researcher_reads_the_agreement_page_of_a_round(page, live_server, login):
    w = _simulated_round()
    researcher = UserFactory(role=Role.RESEARCHER)
    login(page, researcher)

    page.click("text=Agreement")
    page.click(f"a[href='/rounds/{w.round.pk}/agreement/']")

    page.wait_for_selector("h1:has-text('Rater agreement')")
    summary = page.locator("[data-testid=agreement-summary]")
    assert "n = 36 images" in summary.inner_text()
    for heading in (
        "1 · Agreement between physicians",
        "2 · Test–retest (self-consistency)",
        "3 · Visual Turing test: synthetic against real",
        "4 · Time per image and drift across a session",
        "5 · Reward model against the human ceiling",
    ):
        assert page.locator(f"h2:has-text('{heading}')").is_visible()
    assert page.locator("svg.chart").count() >= 9
    assert page.locator("[data-testid=retest-table] tbody tr").count() == 3
    note = page.locator("[data-testid=ceiling-note]").inner_text()
    assert "6 of 36 images in scope have no score" in note
    assert "mean κ" in page.locator("[data-testid=ceiling-summary]").inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "agreement-page.png"), full_page=True)

    page.select_option("#id_modality", "fundus")
    page.click("text=Apply")
    page.wait_for_url("**modality=fundus**")
    assert (
        "Modality: fundus"
        in page.locator("[data-testid=agreement-summary]").inner_text()
    )
    page.screenshot(path=str(SHOTS / "agreement-page-fundus.png"), full_page=False)
    assert page.js_errors == []
