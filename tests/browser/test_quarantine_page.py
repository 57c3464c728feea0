"""An admin looks at a dataset's quarantined images and releases one."""

from __future__ import annotations

from django.core.files.base import ContentFile

from annotations.models import AuditEvent
from tests.factories import DatasetFactory, ImageFactory

from .conftest import medical_png

REASON = (
    "DICOM BurnedInAnnotation absent on a US image, which often carries "
    "burned-in text: an admin must look at it before it is served"
)


def test_admin_reviews_and_releases_a_quarantined_image(
    page, live_server, login, admin_user, shot
):
    dataset = DatasetFactory(name="Abdominal ultrasound 2026")
    held = [
        ImageFactory(
            dataset=dataset,
            modality="ultrasound",
            prompt=f"Ultrasound: liver, case {i}",
            quarantined=True,
            quarantine_reason=REASON,
            preview=ContentFile(medical_png("phantom"), name="preview.png"),
        )
        for i in range(3)
    ]
    ImageFactory(dataset=dataset, modality="ultrasound", prompt="Ultrasound: kidney")
    login(page, admin_user)
    page.goto(f"{live_server.url}/manage/datasets/")
    page.click(f"a[href='/manage/datasets/{dataset.pk}/quarantine/']")
    grid = page.get_by_test_id("quarantine-grid")
    assert grid.locator("figure").count() == 3
    assert "BurnedInAnnotation absent" in grid.inner_text()
    shot(page, "datasets-quarantine")

    first = held[0]
    card = page.get_by_test_id(f"quarantined-{first.pk}")
    card.get_by_label("What you checked").fill("Looked at it: no text in the image")
    card.get_by_test_id(f"release-{first.pk}").click()
    page.wait_for_load_state()
    assert page.get_by_test_id("quarantine-grid").locator("figure").count() == 2
    event = AuditEvent.objects.get(action="image_release")
    assert event.actor_id == admin_user.pk
    assert event.detail["note"] == "Looked at it: no text in the image"
    assert page.js_errors == []
