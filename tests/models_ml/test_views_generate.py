"""The generate page: any role starts a filtered generation and sees only its
own jobs' images; the gallery and the zip carry scores and provenance."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from django.urls import reverse

from annotations.models import Role
from models_ml.models import Job, JobKind, JobStatus

from .ml_page_data import diffusion, finished_generate_job, generate_job, reward

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def sent(monkeypatch):
    from medrlhf.celery import app

    calls = []

    class Result:
        id = "celery-id"

    def send_task(name, args=None, queue="", **kw):
        calls.append((name, args, queue))
        return Result()

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get(reverse("ml-generate"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.RESEARCHER, Role.ADMIN])
def test_every_role_sees_the_form_with_the_newest_versions_chosen(
    client, make_user, role
):
    diffusion("old")
    newest = diffusion("new")
    reward("r1")
    newest_reward = reward("r2")
    client.force_login(make_user(role))
    response = client.get(reverse("ml-generate"))
    form = response.context["form"]
    assert response.status_code == 200
    assert form["model_version"].value() == newest.pk
    assert form["reward_version"].value() == newest_reward.pk


def test_page_says_models_are_missing_when_none_is_trained(client, physician):
    client.force_login(physician)
    html = client.get(reverse("ml-generate")).content.decode()
    assert "needs a trained diffusion model and a reward model" in html


def test_posting_the_form_queues_a_generate_job_and_shows_its_page(
    client, physician, sent, django_capture_on_commit_callbacks
):
    version, rew = diffusion(), reward(metrics={"threshold": 0.6})
    client.force_login(physician)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("ml-generate"),
            {
                "prompt": "Fundus photograph: optic disc",
                "modality": "Fundus",
                "count": 3,
                "mode": "threshold",
                "n": 4,
                "threshold": "",
                "model_version": version.pk,
                "reward_version": rew.pk,
            },
        )
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("ml-generate-job", args=[job.pk])
    assert job.kind == JobKind.GENERATE
    assert job.created_by == physician
    assert job.params["threshold"] == 0.6
    assert job.params["modality"] == "fundus"
    assert sent == [("models_ml.tasks.ml_generate", [job.pk], "ml")]


def test_a_bad_modality_is_named_and_nothing_is_queued(client, physician):
    version, rew = diffusion(), reward()
    client.force_login(physician)
    response = client.post(
        reverse("ml-generate"),
        {
            "prompt": "x",
            "modality": "%%%",
            "count": 1,
            "mode": "best_of_n",
            "n": 2,
            "model_version": version.pk,
            "reward_version": rew.pk,
        },
    )
    assert response.status_code == 400
    assert response.context["form"].errors["modality"]
    assert not Job.objects.exists()


def test_threshold_mode_without_a_calibrated_threshold_shows_the_service_error(
    client, physician
):
    version, rew = diffusion(), reward()
    client.force_login(physician)
    response = client.post(
        reverse("ml-generate"),
        {
            "prompt": "x",
            "modality": "ct",
            "count": 1,
            "mode": "threshold",
            "n": 2,
            "model_version": version.pk,
            "reward_version": rew.pk,
        },
    )
    assert response.status_code == 400
    assert "no calibrated one" in response.content.decode()
    assert not Job.objects.exists()


def test_running_job_status_keeps_polling_every_two_seconds(client, physician):
    job = generate_job(
        user=physician,
        version=diffusion(),
        reward_version=reward(),
        status=JobStatus.RUNNING,
        progress=0.5,
        message="generating: 1 of 2 sampling steps",
    )
    client.force_login(physician)
    response = client.get(reverse("ml-generate-job-status", args=[job.pk]), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="generate-result"')
    assert 'hx-trigger="every 2s"' in html
    assert "1 of 2 sampling steps" in html


def test_finished_job_stops_polling_with_286_and_shows_kept_beside_rejected(
    client, physician
):
    job, images = finished_generate_job(user=physician)
    client.force_login(physician)
    response = client.get(reverse("ml-generate-job-status", args=[job.pk]), **HTMX)
    html = response.content.decode()
    assert response.status_code == 286
    assert "hx-trigger" not in html
    kept_part, rejected_part = html.split('data-testid="rejected"')
    for image in images[:2]:
        assert str(image.uid) in kept_part.split('data-testid="kept"')[1]
    for image in images[2:]:
        assert str(image.uid) in rejected_part
    assert "reward 0.910" in html
    assert "seed 98 · 20 steps · guidance 3.5 · ddim" in html


def test_another_users_job_and_its_images_are_not_found(client, physician, make_user):
    job, images = finished_generate_job(user=physician)
    other = make_user(Role.PHYSICIAN)
    client.force_login(other)
    assert client.get(reverse("ml-generate-job", args=[job.pk])).status_code == 404
    image_url = reverse("ml-generated-image", args=[images[0].uid])
    assert client.get(image_url).status_code == 404
    zip_url = reverse("ml-generate-download", args=[job.pk])
    assert client.get(zip_url).status_code == 404


def test_creator_and_admin_get_the_generated_image(client, physician, admin_user):
    job, images = finished_generate_job(user=physician)
    url = reverse("ml-generated-image", args=[images[2].uid])
    for user in (physician, admin_user):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert b"".join(response.streaming_content).startswith(b"\x89PNG")


def _zip(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_zip_has_kept_and_rejected_folders_and_manifests_with_provenance(
    client, physician
):
    job, images = finished_generate_job(user=physician)
    client.force_login(physician)
    response = client.get(reverse("ml-generate-download", args=[job.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert f"medrlhf-generate-{job.pk}.zip" in response["Content-Disposition"]
    archive = _zip(response)
    pngs = [n for n in archive.namelist() if n.endswith(".png")]
    assert pngs == [
        "kept/0000_fundus_seed98.png",
        "kept/0001_fundus_seed89.png",
        "rejected/0002_fundus_seed40.png",
        "rejected/0003_fundus_seed19.png",
    ]
    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [r["file_name"] for r in rows] == pngs
    assert [r["kept"] for r in rows] == ["True", "True", "False", "False"]
    assert rows[0]["reward_score"] == "0.91"
    assert rows[0]["scheduler"] == "ddim"
    assert rows[0]["model_version_name"] == "base"
    assert rows[0]["uid"] == images[0].uid.hex
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["job_id"] == job.pk and manifest["include"] == "all"
    assert [r["file_name"] for r in manifest["images"]] == pngs


def test_zip_with_include_kept_leaves_the_rejected_out(client, physician):
    job, _ = finished_generate_job(user=physician)
    client.force_login(physician)
    url = reverse("ml-generate-download", args=[job.pk]) + "?include=kept"
    archive = _zip(client.get(url))
    assert [n for n in archive.namelist() if n.endswith(".png")] == [
        "kept/0000_fundus_seed98.png",
        "kept/0001_fundus_seed89.png",
    ]
    assert json.loads(archive.read("manifest.json"))["include"] == "kept"


def test_zip_with_an_unknown_include_is_refused_naming_the_choices(client, physician):
    job, _ = finished_generate_job(user=physician)
    client.force_login(physician)
    url = reverse("ml-generate-download", args=[job.pk]) + "?include=best"
    response = client.get(url)
    assert response.status_code == 400
    assert "include must be one of all, kept" in response.content.decode()


def test_zip_of_an_unfinished_job_is_refused_until_it_succeeds(client, physician):
    job = generate_job(user=physician, version=diffusion(), reward_version=reward())
    client.force_login(physician)
    response = client.get(reverse("ml-generate-download", args=[job.pk]))
    assert response.status_code == 409
    assert "ready once it has succeeded" in response.content.decode()


def test_a_non_generate_job_is_not_shown_on_the_generate_page(client, admin_user):
    job = Job.objects.create(kind=JobKind.TRAIN_BASE, params={}, created_by=admin_user)
    client.force_login(admin_user)
    response = client.get(reverse("ml-generate-job", args=[job.pk]))
    assert response.status_code == 404
