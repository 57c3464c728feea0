"""The ML pages in chromium: generate (with a job the test finishes in the
worker's place), lineage, retraining steps and the dashboard.

No model is trained here: versions, images and ratings are made directly.
"""

from __future__ import annotations

from typing import Any

from django.core.files.base import ContentFile

from annotations.models import ImageSource, Rating, Round, RoundStatus
from models_ml.models import Job, JobKind, JobStatus, ModelKind, ModelVersion
from tests.factories import DatasetFactory, ImageFactory

from .conftest import medical_png

PROMPT = "Fundus photograph: optic disc and macula, no haemorrhage"


def _version(name: str, kind: str = ModelKind.DIFFUSION, **fields: Any) -> Any:
    return ModelVersion.objects.create(
        name=name, kind=kind, path=f"/models/{name}", **fields
    )


def _generated(version: Any, *, score: float, **fields: Any) -> Any:
    return ImageFactory(
        dataset=None,
        source=ImageSource.GENERATED,
        model_version=version,
        modality="fundus",
        prompt=PROMPT,
        reward_score=score,
        preview=ContentFile(medical_png("fundus", size=128), name="preview.png"),
        **fields,
    )


def _history(admin_user: Any, rater: Any) -> dict[str, Any]:
    """Two rounds, three diffusion versions, two reward models, some jobs."""
    dataset = DatasetFactory(name="Retina demo")
    base_job = Job.objects.create(
        kind=JobKind.TRAIN_BASE, status=JobStatus.SUCCEEDED, progress=1.0, params={}
    )
    base = _version(
        "retina base",
        dataset=dataset,
        job=base_job,
        metrics={"steps": 400, "losses": [0.9, 0.31]},
    )
    r1 = _version(
        "reward #1 (60 ratings)",
        ModelKind.REWARD,
        rating_count=60,
        metrics={"spearman": 0.41, "kappa_quadratic": 0.33, "auc_rated_3": 0.71},
    )
    tuned = _version(
        "retina tuned 1", parent=base, metrics={"steps": 200, "losses": [0.3, 0.27]}
    )
    r2 = _version(
        "reward #2 (140 ratings)",
        ModelKind.REWARD,
        parent=r1,
        rating_count=140,
        metrics={"spearman": 0.58, "kappa_quadratic": 0.49, "auc_rated_3": 0.79},
    )
    _version("retina tuned 1b", parent=base, metrics={"steps": 50})
    rounds = []
    for number, (new, old, new_k, old_k) in enumerate(
        [(base, None, 9, 0), (tuned, base, 22, 10)], start=1
    ):
        rnd = Round.objects.create(
            name=f"Round {number}",
            status=RoundStatus.CLOSED if number == 1 else RoundStatus.RATING,
            model_version=new,
            compare_model_version=old,
            created_by=admin_user,
        )
        rounds.append(rnd)
        for version, threes in ((new, new_k), (old, old_k)):
            if version is None:
                continue
            for i in range(30):
                score = 3 if i < threes else (2 if i % 2 else 1)
                spread = ((i * 7) % 11 - 5) / 40
                image = _generated(version, score=0.1 + 0.25 * score + spread)
                Rating.objects.create(rater=rater, image=image, round=rnd, score=score)
    r2.trained_on_rounds.set(rounds)
    Job.objects.create(
        kind=JobKind.TRAIN_REWARD, status=JobStatus.SUCCEEDED, progress=1, params={}
    )
    return {"base": base, "tuned": tuned, "reward": r2}


def test_admin_reads_lineage_and_dashboard(
    page, live_server, login, shot, admin_user, physician
):
    made = _history(admin_user, physician)
    login(page, admin_user)
    page.goto(f"{live_server.url}/models/lineage/")
    tree = page.get_by_test_id("diffusion-tree")
    tree.locator(f"#version-{made['tuned'].pk}").wait_for()
    nested = tree.locator(
        f"#version-{made['base'].pk} .tree #version-{made['tuned'].pk}"
    )
    assert nested.count() == 1
    shot(page, "ml-lineage")
    page.goto(f"{live_server.url}/models/dashboard/")
    verdict = page.get_by_test_id("verdict").inner_text()
    assert verdict.startswith("The last round helped")
    assert page.locator("svg.chart").count() == 4
    shot(page, "ml-dashboard")
    page.set_viewport_size({"width": 1440, "height": 1800})
    shot(page, "ml-dashboard-full")
    assert page.js_errors == []


def test_long_round_and_version_names_stay_inside_the_dashboard_charts(
    page, live_server, login, shot, admin_user, physician
):
    made = _history(admin_user, physician)
    for rnd in Round.objects.all():
        rnd.name = f"Demo round {rnd.pk}: the base model against real images"
        rnd.save(update_fields=["name"])
    made["base"].name = "tiny base model trained on the demo data, 2100 steps"
    made["base"].save(update_fields=["name"])
    # Wide letters: the demo's own "Demo base model (tiny, 32 px)" ran 3 px
    # past the edge where an average-width estimate said it fitted.
    made["tuned"].name = "MWDM Demo base model (tiny, 32 px)"
    made["tuned"].save(update_fields=["name"])
    login(page, admin_user)
    page.goto(f"{live_server.url}/models/dashboard/")
    labels = page.locator("svg.chart text.label")
    assert labels.count() >= 5
    # Each row label starts inside its chart: none runs off the left edge.
    lefts = labels.evaluate_all("els => els.map(e => e.getBBox().x)")
    assert min(lefts) >= 0, lefts
    shot(page, "ml-dashboard-long-names")
    # The whole name is still there on hover.
    titles = labels.evaluate_all(
        "els => els.map(e => e.querySelector('title').textContent)"
    )
    assert any("the base model against real images" in t for t in titles), titles


def test_physician_generates_and_watches_the_gallery_fill(
    page, live_server, login, shot, admin_user, physician, monkeypatch
):
    queued: list[int] = []
    monkeypatch.setattr(
        "models_ml.services.jobs.job_enqueue", lambda *, job: queued.append(job.pk)
    )
    base = _version("retina base")
    _version("reward #1", ModelKind.REWARD, metrics={"threshold": 0.5})
    login(page, physician)
    page.goto(f"{live_server.url}/generate/")
    page.fill("#id_prompt", PROMPT)
    page.fill("#id_modality", "fundus")
    page.fill("#id_count", "3")
    assert page.locator("#id_threshold").is_hidden()
    page.get_by_label("Threshold: keep images above a reward").check()
    assert page.locator("#id_threshold").is_visible()
    page.get_by_label("Best of N: keep the highest reward of N tries").check()
    page.fill("#id_n", "2")
    shot(page, "ml-generate-form")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url(f"{live_server.url}/generate/*/")
    assert page.get_by_test_id("job-status").inner_text() == "Queued"
    # The worker's part, done here: the page must notice through its polling.
    job = Job.objects.get(pk=queued[0])
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, progress=0.4, message="generating: 8 of 20 steps"
    )
    page.get_by_text("generating: 8 of 20 steps").wait_for()
    shot(page, "ml-generate-running")
    for i, (score, kept) in enumerate(
        [
            (0.91, True),
            (0.84, True),
            (0.77, True),
            (0.41, False),
            (0.22, False),
            (0.18, False),
        ]
    ):
        _generated(
            base,
            score=score,
            generation={
                "job_id": job.pk,
                "kept": kept,
                "seed": job.params["seed"] + i,
                "steps": 20,
                "guidance": 3.0,
                "scheduler": "ddim",
                "attempt": 0,
            },
        )
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED,
        progress=1.0,
        result={"stats": {"n_generated": 6, "n_unfilled": 0}},
    )
    page.get_by_test_id("kept").locator("figure").nth(2).wait_for()
    assert page.get_by_test_id("rejected").locator("figure").count() == 3
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tile img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    shot(page, "ml-generate-gallery")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download zip with manifest").click()
    assert download.value.suggested_filename == f"medrlhf-generate-{job.pk}.zip"
    assert page.js_errors == []


def test_admin_watches_retraining_steps(page, live_server, login, shot, admin_user):
    chain = {"id": "c1", "round": {"images_per_prompt": 2}}
    reward_version = _version(
        "reward #3 (200 ratings)",
        ModelKind.REWARD,
        rating_count=200,
        metrics={"spearman": 0.62, "kappa_quadratic": 0.51, "auc_rated_3": 0.82},
    )
    first = Job.objects.create(
        kind=JobKind.TRAIN_REWARD,
        status=JobStatus.SUCCEEDED,
        progress=1.0,
        params={"chain": {**chain, "step": "train_reward"}},
        result={"model_version_id": reward_version.pk},
        created_by=admin_user,
    )
    finetune = Job.objects.create(
        kind=JobKind.FINETUNE,
        status=JobStatus.RUNNING,
        progress=0.35,
        message="step 70 of 200",
        params={"chain": {**chain, "step": "finetune"}},
        created_by=admin_user,
    )
    login(page, admin_user)
    page.goto(f"{live_server.url}/models/jobs/{first.pk}/")
    page.get_by_test_id("step-finetune").get_by_text("step 70 of 200").wait_for()
    shot(page, "ml-retraining-steps")
    Job.objects.filter(pk=finetune.pk).update(progress=0.8, message="step 160 of 200")
    page.get_by_text("step 160 of 200").wait_for()
    _version("retina base")
    page.goto(f"{live_server.url}/models/retraining/")
    page.select_option("#id_rater_weighting", "reliability")
    shot(page, "ml-retraining-form")
    assert page.js_errors == []


def test_physician_cancels_their_own_generation(
    page, live_server, login, shot, physician, monkeypatch
):
    queued: list[int] = []
    monkeypatch.setattr(
        "models_ml.services.jobs.job_enqueue", lambda *, job: queued.append(job.pk)
    )
    _version("retina base")
    login(page, physician)
    page.goto(f"{live_server.url}/generate/")
    page.fill("#id_prompt", PROMPT)
    page.fill("#id_modality", "fundus")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url(f"{live_server.url}/generate/*/")
    job = Job.objects.get(pk=queued[0])
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, progress=0.3, message="generating: 6 of 20 steps"
    )
    page.get_by_text("generating: 6 of 20 steps").wait_for()
    # No reward model yet: the images come unfiltered, and the page says so.
    assert page.get_by_test_id("generate-filter").inner_text() == (
        "none: every image kept"
    )
    shot(page, "ml-generate-cancel-offered")
    page.get_by_test_id("generate-cancel").click()
    page.get_by_text("Cancelling…").wait_for()
    job.refresh_from_db()
    assert job.cancel_requested and job.status == JobStatus.RUNNING
    # The worker stops at its next progress report.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    page.get_by_test_id("job-status").filter(has_text="Cancelled").wait_for()
    shot(page, "ml-generate-cancelled")
    assert page.js_errors == []
