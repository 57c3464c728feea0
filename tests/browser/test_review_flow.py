"""Closing the loop in chromium: an admin reviews a version's scored images,
moves the threshold, checks images and sends them as a round that a physician
then rates; and abandons a round whose generation failed."""

from __future__ import annotations

from typing import Any

from django.core.files.base import ContentFile

from annotations.models import Rating, Round, RoundStatus
from tests.models_ml.review_data import diffusion, generating_round, reward, scored

from .conftest import medical_png
from .test_pages import _press_and_wait

SCORES = [0.95, 0.85, 0.75, 0.65, 0.55, 0.45, 0.35, 0.25, 0.15, 0.05]


def _scored_images(version: Any) -> list[Any]:
    preview = medical_png("fundus", size=160)
    return [
        scored(version, s, seed=40 + i, preview=ContentFile(preview, name="p.png"))
        for i, s in enumerate(SCORES)
    ]


def _kept_count(page: Any) -> str:
    return page.get_by_test_id("kept-count").inner_text()


def test_admin_filters_by_threshold_sends_a_round_and_a_physician_rates_it(
    page, live_server, login, shot, admin_user, physician
):
    version = diffusion("retina v2")
    reward("reward #2", metrics={"threshold": 0.5})
    _scored_images(version)
    login(page, admin_user)
    page.goto(f"{live_server.url}/models/review/")
    assert _kept_count(page) == "5"
    assert page.locator("#id_threshold").input_value() == "0.50"
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tile img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    shot(page, "review-default")

    # The slider re-filters on the server; the number field follows it.
    page.locator("[data-threshold-range]").fill("0.7")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=kept-count]').innerText === '3'"
    )
    assert page.locator("#id_threshold").input_value() == "0.70"
    assert "threshold=0.70" in page.url
    assert page.get_by_test_id("rejected-count").inner_text() == "7"

    page.get_by_role("button", name="Check the kept on this page").click()
    boxes = page.locator("#review-results input[name=image]")
    assert [boxes.nth(i).is_checked() for i in range(4)] == [True, True, True, False]
    boxes.nth(3).check()  # one rejected image, to see how physicians judge it
    assert page.locator("[data-checked-count]").inner_text() == "4 checked"
    page.fill("#id_name", "Retina v2, reviewed at 0.70")
    page.set_viewport_size({"width": 1440, "height": 1100})
    shot(page, "review-checked")
    page.get_by_role("button", name="Create round from checked images").click()
    page.wait_for_url(f"{live_server.url}/manage/rounds/")
    assert "created and opened for rating with 4 images" in page.content()
    rnd = Round.objects.get(name="Retina v2, reviewed at 0.70")
    assert rnd.status == RoundStatus.RATING
    assert rnd.settings["review"]["threshold"] == 0.7
    assert (rnd.settings["review"]["kept"], rnd.settings["review"]["rejected"]) == (
        3,
        1,
    )
    assert sorted(rnd.items.values_list("image__reward_score", flat=True)) == [
        0.65,
        0.75,
        0.85,
        0.95,
    ]
    shot(page, "review-round-created")
    assert page.js_errors == []

    page.get_by_role("button", name="Log out").click()
    login(page, physician)
    page.goto(f"{live_server.url}/rate/{rnd.pk}/")
    page.wait_for_function(
        "() => document.querySelector('[data-image]').dataset.shownUid"
    )
    shot(page, "review-round-rating")
    for key in "3321":
        _press_and_wait(page, key)
    page.get_by_test_id("end-screen").wait_for()
    live = Rating.objects.filter(round=rnd, rater=physician, retracted_at=None)
    assert sorted(live.values_list("score", flat=True)) == [1, 2, 3, 3]
    assert page.js_errors == []


def test_admin_abandons_a_round_whose_generation_failed(
    page, live_server, login, shot, admin_user
):
    rnd, job = generating_round(version=diffusion("retina v3"), admin=admin_user)
    login(page, admin_user)
    page.goto(f"{live_server.url}/manage/rounds/")
    row = page.locator(f"#round-{rnd.pk}")
    assert f"generation job #{job.pk} · failed" in row.inner_text()
    assert row.get_by_role("button", name="Retry generation").is_visible()
    shot(page, "rounds-failed-generation")
    page.on("dialog", lambda dialog: dialog.accept())
    row.get_by_label(f"Reason for abandoning {rnd.name}").fill("CUDA out of memory")
    row.get_by_role("button", name="Abandon").click()
    page.get_by_test_id("abandon-reason").wait_for()
    assert "Abandoned" in row.inner_text()
    assert row.get_by_role("button", name="Retry generation").count() == 0
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.CLOSED
    assert rnd.settings["abandoned"]["reason"] == "CUDA out of memory"
    shot(page, "rounds-abandoned")
    assert page.js_errors == []
