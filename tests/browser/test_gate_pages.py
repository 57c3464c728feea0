"""The retraining form's objective, control and round-size fields, and the
promotion gate's verdict on the dashboard and in the lineage, in chromium."""

from __future__ import annotations

from typing import Any

from annotations.models import Rating, Round, RoundStatus
from models_ml.models import Comparison, GateStatus, Job, JobKind
from tests.factories import DatasetFactory, ImageFactory

from .test_ml_pages import _version


def test_retraining_form_offers_objectives_control_and_a_sized_round(
    page,
    live_server,
    login,
    shot,
    admin_user,
    physician,
    django_capture_on_commit_callbacks,
):
    dataset = DatasetFactory(name="Retina demo")
    ImageFactory(dataset=dataset, modality="fundus", prompt="Fundus: optic disc")
    base = _version("retina base", dataset=dataset)
    rnd = Round.objects.create(
        name="Round 1", status=RoundStatus.RATING, created_by=admin_user
    )
    for i in range(4):
        image = ImageFactory(dataset=None, source="generated", model_version=base)
        Rating.objects.create(rater=physician, image=image, round=rnd, score=1 + i % 3)
    login(page, admin_user)
    page.goto(f"{live_server.url}/models/retraining/")

    form = page.get_by_test_id("retrain-form")
    objective = form.locator("#id_objective")
    options = objective.locator("option").all_inner_texts()
    assert [o.split(":")[0] for o in options] == ["Weighted", "Filtered", "KTO", "DPO"]
    assert form.locator("#id_train_control").is_checked()
    power = page.get_by_test_id("power").inner_text()
    assert "a 10-point gain over its parent and the control is detected" in power
    assert "the parent's 25% rated 3 so far" in power
    before = form.locator("#id_images_per_prompt").input_value()
    # The other form on the page keeps its own default.
    assert page.locator("#id_round-images_per_prompt").input_value() == "4"
    page.set_viewport_size({"width": 1440, "height": 1500})
    shot(page, "ml-retraining-form")

    # A larger expected gain needs fewer images: the proposal follows.
    form.locator("#id_expected_gain").fill("30")
    form.locator("#id_expected_gain").dispatch_event("change")
    page.get_by_test_id("power").get_by_text("a 30-point gain").wait_for()
    after = form.locator("#id_images_per_prompt").input_value()
    assert int(after) < int(before)
    form.locator("#id_train_control").uncheck()
    page.get_by_test_id("power").get_by_text("over its parent is detected").wait_for()

    objective.select_option("kto")
    form.locator("#id_kto_middle").select_option("dropped")
    form.locator("#id_train_control").check()
    form.locator("#id_finetune_steps").fill("7")
    with django_capture_on_commit_callbacks(execute=False):
        form.get_by_role("button", name="Start retraining").click()
        page.wait_for_url("**/models/jobs/*/")
    job = Job.objects.get(kind=JobKind.TRAIN_REWARD)
    chain = job.params["chain"]
    finetune = chain["finetune"]
    assert (finetune["max_steps"], finetune["objective"]) == (7, "kto")
    assert (finetune["kto_middle"], finetune["kto_beta"]) == ("dropped", 2000.0)
    assert chain["control"] is True
    assert chain["round"]["images_per_prompt"] == int(after)
    planned = page.locator(".step-planned").all_inner_texts()
    assert "KTO fine-tune (per-image judgements)" in planned[0]
    assert "Control fine-tune (same images, no feedback)" in planned[1]
    assert "Starts with the new version's fine-tune" in planned[1]
    assert "Comparison round" in planned[2]
    assert "when the new version and its control have both succeeded" in planned[2]
    shot(page, "ml-retraining-planned")
    assert page.js_errors == []


def _comparison(admin_user: Any, rater: Any, *, decided: bool) -> Comparison:
    parent = _version("retina base")
    candidate = _version("retina + kto", parent=parent, params={"objective": "kto"})
    control = _version(
        "retina control", parent=parent, is_control=True, params={"objective": "none"}
    )
    rnd = Round.objects.create(
        name="retina + kto vs retina base",
        status=RoundStatus.RATING,
        model_version=candidate,
        compare_model_version=parent,
        created_by=admin_user,
    )
    comparison = Comparison.objects.create(
        round=rnd, candidate=candidate, parent=parent, control=control
    )
    scores = {
        "candidate": [3] * 34 + [1] * 14,
        "parent": [3] * 10 + [1] * 30 + [3] * 8,
        "control": [3] * 12 + [1] * 28 + [3] * 8,
    }
    version_of = {"candidate": candidate, "parent": parent, "control": control}
    for arm, values in scores.items():
        for seed, score in enumerate(values):
            image = ImageFactory(
                dataset=None,
                source="generated",
                model_version=version_of[arm],
                prompt="Fundus: optic disc",
                generated_for_round=rnd,
                generation={"arm": arm, "request_seed": seed},
            )
            Rating.objects.create(rater=rater, image=image, round=rnd, score=score)
    if decided:
        from annotations.services.rounds import round_close

        round_close(round=rnd, actor=admin_user)
    return comparison


def test_dashboard_and_lineage_show_the_gate(
    page, live_server, login, shot, admin_user, physician
):
    comparison = _comparison(admin_user, physician, decided=True)
    comparison.candidate.refresh_from_db()
    assert comparison.candidate.gate == GateStatus.PROMOTED
    login(page, admin_user)
    page.goto(f"{live_server.url}/models/dashboard/")

    gate = page.get_by_test_id(f"gate-{comparison.pk}")
    verdict = gate.get_by_test_id("gate-verdict").inner_text()
    assert verdict.startswith("Promoted: retina + kto beat the parent and control")
    rows = gate.locator("tbody tr")
    assert rows.count() == 3
    candidate = gate.locator("tr[data-arm=candidate]").inner_text()
    assert "0.708" in candidate and "(34/48)" in candidate
    assert "+33.3 points" in candidate
    assert gate.locator("tr[data-arm=candidate] .sig").count() == 2
    shot(page, "ml-dashboard-gate")

    page.goto(f"{live_server.url}/models/lineage/")
    tree = page.get_by_test_id("diffusion-tree")
    promoted = tree.get_by_test_id(f"gate-{comparison.candidate.pk}")
    assert promoted.inner_text() == "Promoted"
    control_node = tree.locator(f"#version-{comparison.control.pk}")
    assert "control" in control_node.locator(".node-head").inner_text()
    shot(page, "ml-lineage-gate")
    assert page.js_errors == []
