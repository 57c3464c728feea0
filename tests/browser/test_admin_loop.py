"""An admin runs one turn of the loop in chromium: opens a generated round,
starts a retraining round, watches its steps, and reads the dashboard.

The forms are filled and submitted in the browser; the jobs they queue are
advanced here in the worker's place (the real worker runs them in
tests/models_ml/test_ml_worker.py and the HTTP end-to-end test).
"""

from __future__ import annotations

from typing import Any

from annotations.models import ImageSource, Rating, Round, RoundStatus
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion
from tests.factories import DatasetFactory, ImageFactory

from .conftest import SHOTS


def _setup(admin_user: Any, physician: Any) -> dict[str, Any]:
    dataset = DatasetFactory(name="Retina demo")
    ImageFactory.create_batch(6, dataset=dataset, modality="fundus")
    base = ModelVersion.objects.create(
        name="retina base",
        kind=ModelKind.DIFFUSION,
        path="/models/retina-base",
        dataset=dataset,
        metrics={"steps": 400},
    )
    rated = Round.objects.create(
        name="Round 1",
        status=RoundStatus.CLOSED,
        model_version=base,
        created_by=admin_user,
    )
    for i in range(8):
        image = ImageFactory(
            dataset=None,
            source=ImageSource.GENERATED,
            model_version=base,
            modality="fundus",
            reward_score=0.2 + 0.1 * (i % 3),
        )
        Rating.objects.create(
            rater=physician, image=image, round=rated, score=1 + i % 3
        )
    return {"base": base, "dataset": dataset}


def test_admin_opens_a_round_starts_retraining_and_reads_the_dashboard(
    page, live_server, login, shot, admin_user, physician, monkeypatch
):
    queued: list[int] = []
    monkeypatch.setattr(
        "models_ml.services.jobs.job_enqueue", lambda *, job: queued.append(job.pk)
    )
    made = _setup(admin_user, physician)
    login(page, admin_user)

    # 1. A round that generates, with typed prompts and real controls.
    page.goto(f"{live_server.url}/models/retraining/")
    form = page.get_by_test_id("round-form")
    form.get_by_label("Name").fill("Round 2: base on two prompts")
    form.get_by_label("Prompts").fill(
        "fundus: optic disc and macula, no haemorrhage\n"
        "fundus: proliferative diabetic retinopathy"
    )
    form.get_by_label("Images / prompt").fill("3")
    form.get_by_label("Controls (%)").fill("20")
    form.get_by_label("Raters / image").fill("2")
    form.get_by_label("Agreement set (%)").fill("25")
    form.get_by_label("Repeats (%)").fill("10")
    shot(page, "admin-loop-round-form")
    form.screenshot(path=str(SHOTS / "admin-loop-round-form-whole.png"))
    form.get_by_role("button", name="Generate round").click()
    page.wait_for_url(f"{live_server.url}/models/jobs/*/")
    job = Job.objects.get(pk=queued[-1])
    assert job.kind == JobKind.GENERATE_ROUND
    rnd = Round.objects.get(pk=job.params["round_id"])
    assert (rnd.status, rnd.raters_per_image) == (RoundStatus.GENERATING, 2)
    assert (rnd.agreement_share, rnd.repeat_share) == (0.25, 0.1)
    assert rnd.model_version == made["base"]
    step = page.get_by_test_id("step-generate_round")
    assert "Queued" in step.inner_text()
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, progress=0.5, message="image 3 of 6"
    )
    step.get_by_text("image 3 of 6").wait_for()
    Round.objects.filter(pk=rnd.pk).update(status=RoundStatus.RATING)
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED, progress=1.0, result={"n_images": 6}
    )
    page.get_by_test_id("chain-finished").wait_for()
    assert "Open for rating" in step.inner_text()
    shot(page, "admin-loop-round-generated")

    # 2. One action runs reward model, fine-tune and the next round.
    page.goto(f"{live_server.url}/models/retraining/")
    form = page.get_by_test_id("retrain-form")
    form.get_by_label("Fine-tune steps").fill("50")
    form.get_by_label("Ensemble size").fill("2")
    form.get_by_role("button", name="Start retraining").click()
    page.wait_for_url(f"{live_server.url}/models/jobs/*/")
    reward_job = Job.objects.get(pk=queued[-1])
    assert reward_job.kind == JobKind.TRAIN_REWARD
    assert reward_job.params["reward"]["ensemble_size"] == 2
    chain = reward_job.params["chain"]
    # The steps still to come are listed before they exist (the default
    # objective: DPO).
    page.get_by_text("DPO fine-tune (preference pairs)").wait_for()
    assert chain["finetune"]["objective"] == "dpo"
    assert chain["round"]["best_of_n"] == 4
    reward = ModelVersion.objects.create(
        name="reward #1 (8 ratings)",
        kind=ModelKind.REWARD,
        path="/models/reward-1",
        rating_count=8,
        metrics={"spearman": 0.52, "kappa_quadratic": 0.44, "auc_rated_3": 0.77},
    )
    Job.objects.filter(pk=reward_job.pk).update(
        status=JobStatus.SUCCEEDED,
        progress=1.0,
        result={"model_version_id": reward.pk},
    )
    finetune = Job.objects.create(
        kind=JobKind.FINETUNE,
        status=JobStatus.RUNNING,
        progress=0.3,
        message="step 15 of 50",
        params={"chain": {**chain, "step": "finetune"}},
        created_by=admin_user,
    )
    page.get_by_test_id("step-finetune").get_by_text("step 15 of 50").wait_for()
    assert "spearman" in page.get_by_test_id("step-train_reward").inner_text().lower()
    shot(page, "admin-loop-retraining-running")
    Job.objects.filter(pk=finetune.pk).update(progress=0.9, message="step 45 of 50")
    page.get_by_text("step 45 of 50").wait_for()

    # 3. The dashboard plots what the rounds measured.
    page.goto(f"{live_server.url}/models/dashboard/")
    assert page.locator("svg").count() >= 2
    shot(page, "admin-loop-dashboard")
    assert page.js_errors == []
