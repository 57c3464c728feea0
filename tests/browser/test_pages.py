"""Every page a person uses, driven in chromium."""

from __future__ import annotations

import csv
import zipfile
from typing import Any

import pytest
from django.core.files.base import ContentFile

from annotations.models import Dataset, Rating, Round, RoundStatus
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit
from annotations.services.rounds import round_create
from models_ml.tasks import run_import
from tests.factories import DatasetFactory, ImageFactory

from .conftest import medical_png

PROMPTS = [
    "Fundus photograph: optic disc and macula, no haemorrhage",
    "Axial CT of the head at the level of the lateral ventricles",
    "Fundus photograph with a few scattered exudates",
]
HOSTILE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def _images(n: int, prompts: list[str] | None = None) -> list[Any]:
    dataset = DatasetFactory(name="demo")
    made = []
    for i in range(n):
        kind = "phantom" if i % 2 else "fundus"
        made.append(
            ImageFactory(
                dataset=dataset,
                modality="fundus" if kind == "fundus" else "ct",
                prompt=(prompts or PROMPTS)[i % len(prompts or PROMPTS)],
                file=ContentFile(medical_png(kind), name="image.png"),
                preview=ContentFile(medical_png(kind), name="preview.png"),
            )
        )
    return made


def _round(admin_user: Any, images: list[Any], name: str = "Fundus and CT, round 1"):
    return round_create(name=name, images=images, created_by=admin_user, open_now=True)


def _shown_uid(page: Any) -> str | None:
    return page.evaluate(
        "() => { const el = document.querySelector('input[name=image]');"
        " return el ? el.value : null; }"
    )


def _wait_ready(page: Any) -> None:
    page.wait_for_function("() => document.documentElement.dataset.raterReady === '1'")


def _press_and_wait(page: Any, key: str) -> None:
    """Press a key on the rating page and wait for the next image to be ready."""
    _wait_ready(page)
    before = _shown_uid(page)
    page.keyboard.press(key)
    page.wait_for_function(
        "uid => { const el = document.querySelector('input[name=image]');"
        " return !el || el.value !== uid; }",
        arg=before,
    )
    _wait_ready(page)


def test_physician_rates_with_the_keyboard_undoes_and_reaches_the_end(
    page, live_server, login, shot, admin_user, physician
):
    rnd = _round(admin_user, _images(3))
    login(page, physician)
    page.goto(f"{live_server.url}/rate/{rnd.pk}/")
    page.wait_for_function(
        "() => document.querySelector('[data-image]').dataset.shownUid"
    )
    box = page.locator("[data-image]").bounding_box()
    assert box["height"] >= 500, "the image must be shown large"
    shot(page, "rating-page")

    _press_and_wait(page, "3")
    second = _shown_uid(page)
    # Keys typed into the comment box are text, not ratings.
    page.fill("#id_comment", "")
    page.locator("#id_comment").type("1 small artefact")
    assert Rating.objects.count() == 1
    page.locator("input[value=artifact]").check()
    page.locator("#id_comment").blur()
    _press_and_wait(page, "1")
    assert Rating.objects.filter(retracted_at=None).count() == 2

    page.keyboard.press("u")
    page.wait_for_function(
        "uid => document.querySelector('input[name=image]')?.value === uid", arg=second
    )
    _wait_ready(page)
    assert page.get_by_role("status").first.inner_text().startswith("Your rating of 1")
    _press_and_wait(page, "2")
    _press_and_wait(page, "2")

    end = page.get_by_test_id("end-screen")
    end.wait_for()
    assert "All done" in end.inner_text()
    shot(page, "end-screen")
    live = Rating.objects.filter(round=rnd, retracted_at=None)
    assert sorted(live.values_list("score", flat=True)) == [2, 2, 3]
    assert Rating.objects.filter(round=rnd, retracted_at__isnull=False).count() == 1
    flagged = Rating.objects.get(round=rnd, score=1)
    assert flagged.flags == ["artifact"] and flagged.comment == "1 small artefact"
    assert all(r.time_taken_ms and r.time_taken_ms > 0 for r in live)
    assert page.js_errors == []


def test_double_click_sends_one_rating_request(
    page, live_server, login, admin_user, physician
):
    rnd = _round(admin_user, _images(2))
    login(page, physician)
    page.goto(f"{live_server.url}/rate/{rnd.pk}/")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    before = _shown_uid(page)
    page.evaluate(
        "() => { const b = document.querySelector(\"[data-score-key='2']\");"
        " b.click(); b.click(); }"
    )
    page.wait_for_function(
        "uid => document.querySelector('input[name=image]')?.value !== uid", arg=before
    )
    assert len([u for u in posts if u.endswith("/submit/")]) == 1
    assert Rating.objects.filter(round=rnd).count() == 1


def test_script_in_a_prompt_is_shown_as_text_and_never_runs(
    page, live_server, login, admin_user, physician
):
    rnd = _round(admin_user, _images(2, prompts=[HOSTILE]))
    login(page, physician)
    page.goto(f"{live_server.url}/rate/{rnd.pk}/")
    prompt = page.get_by_test_id("prompt")
    assert prompt.inner_text() == HOSTILE
    # The second prompt arrives through an htmx swap, not a page load.
    _press_and_wait(page, "2")
    assert page.get_by_test_id("prompt").inner_text() == HOSTILE
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("#rater img[src=x]").count() == 0


def test_researcher_downloads_the_export(
    page, live_server, login, shot, admin_user, physician, researcher, tmp_path
):
    rnd = _round(admin_user, _images(3))
    while (asg := assignment_next(round=rnd, rater=physician)) is not None:
        rating_submit(round=rnd, rater=physician, image=asg.round_image.image, score=3)
    login(page, researcher)
    page.goto(f"{live_server.url}/export/")
    shot(page, "export-page")
    page.select_option("#id_round", str(rnd.pk))
    with page.expect_download() as info:
        page.get_by_test_id("export-download").click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    with target.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert {row["rating"] for row in rows} == {"3"}
    assert {row["prompt"] for row in rows} <= set(PROMPTS)


def test_researcher_downloads_pairs_and_the_dataset_zip(
    page, live_server, login, shot, admin_user, physician, researcher, tmp_path
):
    images = _images(4, prompts=["=optic disc, same prompt"])
    best = {images[0].pk, images[1].pk}
    rnd = _round(admin_user, images)
    while (asg := assignment_next(round=rnd, rater=physician)) is not None:
        image = asg.round_image.image
        score = 3 if image.pk in best else 1
        rating_submit(round=rnd, rater=physician, image=image, score=score)
    login(page, researcher)
    page.goto(f"{live_server.url}/export/")
    page.select_option("#id_round", str(rnd.pk))
    shot(page, "export-page-three-downloads")

    with page.expect_download() as info:
        page.get_by_test_id("export-pairs").click()
    pairs = tmp_path / info.value.suggested_filename
    info.value.save_as(pairs)
    assert pairs.name.startswith(f"medrlhf-pairs-round-{rnd.pk}-")
    with pairs.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    # One pair per modality: the 3 over the 1 of the same prompt.
    assert sorted(r["modality"] for r in rows) == ["ct", "fundus"]
    assert {(r["chosen_score"], r["rejected_score"]) for r in rows} == {("3", "1")}
    assert {r["prompt"] for r in rows} == {"'=optic disc, same prompt"}

    with page.expect_download() as info:
        page.get_by_test_id("export-dataset").click()
    archive_path = tmp_path / info.value.suggested_filename
    info.value.save_as(archive_path)
    assert archive_path.suffix == ".zip"
    with zipfile.ZipFile(archive_path) as archive:
        names = set(archive.namelist())
        metadata = archive.read("metadata.jsonl").decode().splitlines()
    assert {"README.txt", "metadata.jsonl", "ratings.csv"} <= names
    assert {f"images/{im.uid.hex}.png" for im in images} <= names
    assert len(metadata) == 4
    assert page.js_errors == []


def test_admin_creates_a_round(page, live_server, login, shot, admin_user, physician):
    _images(4)
    login(page, admin_user)
    page.goto(f"{live_server.url}/manage/rounds/new/")
    page.fill("#id_name", "Fundus review")
    page.locator("input[name=modalities][value=fundus]").check()
    page.fill("#id_raters_per_image", "2")
    page.locator(f"input[name=raters][value='{physician.pk}']").check()
    shot(page, "admin-round-form")
    page.get_by_role("button", name="Create round").click()
    page.wait_for_url(f"{live_server.url}/manage/rounds/")
    assert "Fundus review" in page.locator("#rounds-table").inner_text()
    shot(page, "admin-rounds")
    rnd = Round.objects.get(name="Fundus review")
    assert rnd.status == RoundStatus.RATING
    assert rnd.raters_per_image == 2
    assert rnd.items.count() == 2
    assert list(rnd.raters.all()) == [physician]

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f"#round-{rnd.pk}").get_by_role("button", name="Close").click()
    page.locator(f"#round-{rnd.pk} .badge").filter(has_text="Closed").wait_for()
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.CLOSED


def test_admin_uploads_a_dataset_and_watches_the_job_finish(
    page, live_server, login, shot, admin_user, settings, monkeypatch, tmp_path
):
    settings.IMPORT_ROOTS = [tmp_path]
    settings.UPLOAD_STAGING_DIR = tmp_path / "uploads"
    queued: list[int] = []
    monkeypatch.setattr(
        "models_ml.services.jobs.job_enqueue", lambda *, job: queued.append(job.pk)
    )
    archive = tmp_path / "fundus.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(
            "fundus.csv",
            "path, Text, modality\n"
            "eye.png, Fundus photograph of a healthy retina, fundus\n"
            "../outside.png, Escapes the folder, fundus\n",
        )
        zf.writestr("eye.png", medical_png("fundus", size=256))
    login(page, admin_user)
    page.goto(f"{live_server.url}/manage/datasets/")
    page.fill("#id_upload-name", "Fundus upload")
    page.select_option("#id_upload-on_error", "skip")
    page.set_input_files("#id_upload-file", str(archive))
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url(f"{live_server.url}/jobs/*/")
    assert page.get_by_test_id("job-status").inner_text() == "Queued"
    # The worker's part, run here: the page must notice through its polling.
    run_import(queued[0])
    page.get_by_test_id("job-status").filter(has_text="Succeeded").wait_for()
    report = page.get_by_test_id("import-report").inner_text()
    assert "Images imported\n1" in report
    assert "outside" in page.locator("#job-status table").inner_text()
    shot(page, "import-job")
    assert Dataset.objects.get(name="Fundus upload").images.count() == 1
    assert page.js_errors == []


@pytest.mark.parametrize("path", ["/", "/manage/datasets/"])
def test_admin_pages_render_without_script_errors(
    page, live_server, login, shot, admin_user, path
):
    login(page, admin_user)
    page.goto(f"{live_server.url}{path}")
    shot(page, "admin" + path.rstrip("/").replace("/", "-"))
    assert page.js_errors == []
