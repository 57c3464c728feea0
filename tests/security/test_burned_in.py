"""Attack: an ultrasound (or secondary capture) whose header does not say
whether its pixels carry burned-in text is served to physicians, names and
dates included.

Absent is unknown: for the modalities and SOP classes that often carry
burned-in text the image is quarantined until an admin has looked at it and
released it (audited); an explicit NO, or another modality, is served.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from django.urls import reverse
from pydicom.data import get_testdata_file

from annotations.models import AuditEvent, Image, Role
from annotations.services.imports import dataset_import
from models_ml.engine.readers.deid import burned_in_reason

pytestmark = pytest.mark.django_db


def _dicom(path: Path, source: str, **attrs) -> Path:
    ds = pydicom.dcmread(get_testdata_file(source))
    for key, value in attrs.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)
    return path


CASES = [
    # file, header changes, quarantined?
    ("US1_UNCR.dcm", {"BurnedInAnnotation": None}, True),
    ("US1_UNCR.dcm", {"BurnedInAnnotation": "NO"}, False),
    ("US1_UNCR.dcm", {"BurnedInAnnotation": "YES"}, True),
    ("SC_rgb.dcm", {"BurnedInAnnotation": None}, True),  # secondary capture, OT
    ("CT_small.dcm", {"BurnedInAnnotation": None, "Modality": "XA"}, True),
    ("CT_small.dcm", {"BurnedInAnnotation": None}, False),
    ("CT_small.dcm", {"BurnedInAnnotation": "YES"}, True),
]


@pytest.mark.parametrize("source, attrs, quarantined", CASES)
def test_unknown_burned_in_text_quarantines_the_modalities_that_carry_it(
    tmp_path, settings, source, attrs, quarantined
):
    settings.MEDIA_ROOT = tmp_path / "media"
    _dicom(tmp_path / "a.dcm", source, **attrs)
    assert bool(burned_in_reason(pydicom.dcmread(tmp_path / "a.dcm"))) is quarantined
    (tmp_path / "data.csv").write_text("path,Text\na.dcm,an image\n")
    _, report = dataset_import(name="d", source=tmp_path / "data.csv")
    images = list(Image.objects.all())
    assert images and all(im.quarantined is quarantined for im in images)
    assert report.quarantined == (len(images) if quarantined else 0)
    if quarantined:
        assert "BurnedInAnnotation" in images[0].quarantine_reason


@pytest.fixture
def quarantined(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    _dicom(tmp_path / "us.dcm", "US1_UNCR.dcm", BurnedInAnnotation=None)
    (tmp_path / "data.csv").write_text("path,Text\nus.dcm,Ultrasound: liver\n")
    dataset, _ = dataset_import(name="us", source=tmp_path / "data.csv")
    return Image.objects.get(dataset=dataset)


def test_physicians_cannot_fetch_a_quarantined_image(client_as, quarantined):
    client = client_as(Role.PHYSICIAN)
    assert client.get(f"/api/images/{quarantined.uid}/file/").status_code == 404
    assert client.get(f"/images/{quarantined.uid}/preview.png").status_code in (
        302,
        404,
    )


def test_an_admin_releases_it_over_the_api_and_the_release_is_audited(
    client_as, quarantined
):
    admin = client_as(Role.ADMIN)
    url = f"/api/images/{quarantined.uid}/release/"
    assert admin.post(url, {}, format="json").status_code == 400  # no note
    response = admin.post(url, {"note": "looked: no text"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["quarantined"] is False
    quarantined.refresh_from_db()
    assert not quarantined.quarantined and quarantined.quarantine_reason == ""
    event = AuditEvent.objects.get(action="image_release")
    assert event.actor_id == admin.user.pk
    assert event.detail["note"] == "looked: no text"
    assert "BurnedInAnnotation absent" in event.detail["reason"]
    again = admin.post(url, {"note": "again"}, format="json")
    assert again.status_code == 400 and "not quarantined" in again.json()["detail"]


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.RESEARCHER])
def test_only_admins_release(client_as, quarantined, role):
    response = client_as(role).post(
        f"/api/images/{quarantined.uid}/release/", {"note": "x"}, format="json"
    )
    assert response.status_code == 403
    quarantined.refresh_from_db()
    assert quarantined.quarantined


def test_the_dataset_page_lists_it_and_releases_it(client, admin_user, quarantined):
    client.force_login(admin_user)
    page = reverse("dataset-quarantine", args=[quarantined.dataset_id])
    html = client.get(page).content.decode()
    assert "Ultrasound: liver" in html and "BurnedInAnnotation absent" in html
    release = reverse(
        "dataset-quarantine-release", args=[quarantined.dataset_id, quarantined.pk]
    )
    empty = client.post(release, {f"{quarantined.pk}-note": ""})
    assert empty.status_code == 400
    done = client.post(release, {f"{quarantined.pk}-note": "no text visible"})
    assert done.status_code == 302 and done.url == page
    quarantined.refresh_from_db()
    assert not quarantined.quarantined
    assert "No quarantined images" in client.get(page).content.decode()
