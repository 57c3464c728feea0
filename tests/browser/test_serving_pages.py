"""A physician rates a round with real controls and repeats, and notices neither."""

from __future__ import annotations

import re
from typing import Any

from django.core.files.base import ContentFile

from annotations.design import ServingDesign
from annotations.models import Assignment, ImageSource, Rating, Round, RoundImage
from annotations.services.rounds import round_create
from models_ml.models import Job, JobKind, ModelKind, ModelVersion
from tests.factories import DatasetFactory, ImageFactory

from .conftest import medical_png
from .test_pages import _press_and_wait, _shown_uid, _wait_ready

# Words that would give away a control, a repeat or the agreement set.
TELLS = re.compile(
    r"repeat|again|seen|control|real|generated|agreement|model", re.IGNORECASE
)


def _serving_round(admin_user: Any) -> Any:
    version = ModelVersion.objects.create(
        name="tiny v1", kind=ModelKind.DIFFUSION, path="/m"
    )
    dataset = DatasetFactory(name="fundus set")
    kinds = ["fundus", "phantom"]
    generated = [
        ImageFactory(
            source=ImageSource.GENERATED,
            model_version=version,
            dataset=None,
            modality="fundus" if i % 2 == 0 else "ct",
            prompt=f"Case {i}: fundus photograph, optic disc and macula"
            if i % 2 == 0
            else f"Case {i}: axial CT of the head, lateral ventricles",
            preview=ContentFile(medical_png(kinds[i % 2]), name="preview.png"),
        )
        for i in range(12)
    ]
    controls = [
        ImageFactory(
            dataset=dataset,
            modality="fundus",
            prompt=f"Case {20 + i}: fundus photograph with scattered exudates",
            preview=ContentFile(medical_png("fundus"), name="preview.png"),
        )
        for i in range(6)
    ]
    return round_create(
        name="Fundus, round 2",
        images=generated,
        control_pool=controls,
        control_share=0.25,
        serving=ServingDesign(repeat_share=0.25, agreement_share=0.25),
        created_by=admin_user,
        open_now=True,
    )


def _panel_text(page: Any) -> str:
    return page.locator("#rater").inner_text()


def _counts(page: Any) -> tuple[int, int]:
    match = re.search(r"You: (\d+) rated · (\d+) left", _panel_text(page))
    assert match, _panel_text(page)
    return int(match.group(1)), int(match.group(2))


def test_physician_rates_controls_and_repeats_by_keyboard_without_a_hint(
    page, live_server, login, shot, admin_user, physician
):
    rnd = _serving_round(admin_user)
    items = rnd.items.count()
    assert rnd.items.filter(is_control=True).count() == 4 and items == 16
    login(page, physician)
    page.goto(f"{live_server.url}/rate/{rnd.pk}/")
    _wait_ready(page)
    total = sum(_counts(page))
    assert total == 20  # 16 images and the 4 repeats owed, counted from the start

    shots_taken = set()
    steps = 0
    while page.locator("input[name=image]").count():
        uid = _shown_uid(page)
        showing = Assignment.objects.get(
            rater=physician, round=rnd, round_image__image__uid=uid, completed_at=None
        )
        text = _panel_text(page)
        assert not TELLS.search(text), text
        rated, left = _counts(page)
        assert (rated, rated + left) == (steps, total)
        kind = "repeat" if showing.is_repeat else "control"
        if showing.is_repeat or showing.round_image.is_control:
            if kind not in shots_taken:
                shot(page, f"serving-{kind}")
                shots_taken.add(kind)
        _press_and_wait(page, "123"[steps % 3])
        steps += 1
        assert steps <= total

    end = page.get_by_test_id("end-screen")
    end.wait_for()
    assert "All done" in end.inner_text()
    assert _counts(page) == (total, 0)
    assert (
        page.locator("progress[aria-label='Your progress']").get_attribute("value")
        == "100"
    )
    shot(page, "serving-end-screen")
    assert shots_taken == {"repeat", "control"}

    live = Rating.objects.filter(round=rnd, rater=physician, retracted_at=None)
    assert live.filter(is_repeat=True).count() == 4
    assert live.filter(is_repeat=False).count() == items
    assert all(ri.rating_count == 1 for ri in RoundImage.objects.filter(round=rnd))
    assert page.js_errors == []


def test_admin_creates_a_round_with_a_serving_design_and_scores_it(
    page, live_server, login, shot, admin_user
):
    ImageFactory.create_batch(
        10, preview=ContentFile(medical_png("fundus"), name="preview.png")
    )
    reward = ModelVersion.objects.create(
        name="reward v1", kind=ModelKind.REWARD, path="/rm"
    )
    login(page, admin_user)
    page.goto(f"{live_server.url}/manage/rounds/new/")
    page.fill("#id_name", "Informative first")
    page.fill("#id_agreement_percent", "20")
    page.fill("#id_repeat_percent", "10")
    page.select_option("#id_serving_policy", "uncertainty")
    shot(page, "serving-round-form-error")
    page.get_by_role("button", name="Create round").click()
    # Without a reward model the form says what is missing, next to the field.
    page.get_by_text("needs a reward model").wait_for()
    page.select_option("#id_reward_model_version", str(reward.pk))
    page.fill("#id_rescore_every", "30")
    page.get_by_role("button", name="Create round").click()
    page.wait_for_url(f"{live_server.url}/manage/rounds/")
    rnd = Round.objects.get(name="Informative first")
    assert rnd.rescore_every == 30
    cell = page.locator(f"#round-{rnd.pk} [data-testid=serving]").inner_text()
    assert "Most informative first" in cell and "agreement set 2 images" in cell
    assert "repeats 10%" in cell and "reward v1" in cell
    assert "re-scored every 30 ratings" in cell
    shot(page, "serving-rounds-list")
    assert Job.objects.filter(kind=JobKind.SCORE).count() == 1
    page.locator(f"#round-{rnd.pk}").get_by_role("button", name="Score images").click()
    page.wait_for_url(re.compile(r"/models/jobs/\d+/$"))
    assert Job.objects.filter(kind=JobKind.SCORE).count() == 2
    assert page.js_errors == []
