"""One presentation per round: nothing a physician can fetch tells a real
control from a generated image, or one model version from another."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image as PILImage
from rest_framework.test import APIClient

from annotations.errors import DomainError
from annotations.models import Image, ImageSource, Role
from annotations.presentation import (
    CT_RANGE_HU,
    display_bytes,
    round_display_prepare,
    round_display_size,
    round_presentation,
)
from annotations.services.generation import generated_image_create
from annotations.services.rounds import round_create
from models_ml.models import ModelKind, ModelVersion
from tests.dicom_files import ct_small_hu, import_ct_controls

pytestmark = pytest.mark.django_db

PROMPT = "CT: axial chest with a nodule"


def _ct_controls(folder: Path, n: int = 3) -> list[Image]:
    return import_ct_controls(folder, n=n, prompt=PROMPT)


def _version(name: str) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name, kind=ModelKind.DIFFUSION, path=f"/models/{name}"
    )


def _generated(version: ModelVersion, size: int, n: int, seed: int) -> list[Image]:
    """What a three-channel model draws for a grayscale modality: near-gray
    with colour speckle, at the model's own resolution."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        gray = rng.integers(0, 255, (size, size, 1))
        speckle = rng.integers(-12, 12, (size, size, 3))
        rgb = np.clip(gray + speckle, 0, 255).astype(np.uint8)
        images.append(
            generated_image_create(
                picture=PILImage.fromarray(rgb),
                prompt=PROMPT,
                modality="ct",
                model_version=version,
                generation={"seed": int(rng.integers(1 << 30))},
            )
        )
    return images


def _png_facts(data: bytes) -> dict[str, Any]:
    """Everything a file says besides its pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos + 4 : pos + 8].decode("ascii"))
        if chunks[-1] == "IHDR":
            ihdr = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    opened = PILImage.open(io.BytesIO(data))
    return {
        "length": len(data),
        "chunks": chunks,
        "ihdr": (width, height, depth, colour, interlace),
        "mode": opened.mode,
        "info": sorted(opened.info),
    }


def _blank_page(html: str, image: Image) -> str:
    """The page with what legitimately differs (uids, prompt) blanked."""
    html = html.replace(str(image.uid), "UID").replace(image.uid.hex, "UID")
    html = re.sub(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UID", html
    )
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", html)
    html = re.sub(r'"X-CSRFToken": "[^"]+"', "CSRF", html)
    # What comes next, and the undo button once something is rated, depend on
    # the order of serving, not on the image.
    html = re.sub(r' data-next-[a-z]+="[^"]*"', "", html)
    html = re.sub(r"<button[^>]*data-undo.*?</button>", "", html, flags=re.S)
    # Progress counts change from image to image.
    html = re.sub(r"<strong>\d+</strong>", "N", html)
    html = re.sub(r"\b\d+ left\b", "N left", html)
    html = re.sub(r'value="\d+"(?= aria-label)', "", html)
    html = re.sub(r">\d+%<", ">N%<", html)
    return re.sub(r"\s+", " ", html)


def test_nothing_a_physician_fetches_tells_source_or_version(
    tmp_path, client, physician, admin_user
):
    real = _ct_controls(tmp_path)
    v1, v2 = _version("v1"), _version("v2")
    made = _generated(v1, 32, 3, seed=1) + _generated(v2, 64, 3, seed=2)
    # The stored files differ as the sources do: 128 px 16-bit, 32 and 64 px.
    assert {(im.width, im.bit_depth) for im in real} == {(128, 16)}
    assert {im.width for im in made} == {32, 64}
    rnd = round_create(
        name="blinded", images=real + made, created_by=admin_user, open_now=True
    )
    assert round_display_size(rnd) == 32
    api = APIClient()
    api.force_authenticate(physician)
    client.force_login(physician)

    seen: dict[str, dict[str, Any]] = {}
    for _ in range(len(real) + len(made)):
        page = client.get(reverse("rate", args=[rnd.pk]))
        image = page.context["image"]
        canvas = re.search(r"<canvas[^>]*>", page.content.decode()).group(0)
        page_png = client.get(reverse("rate-image", args=[rnd.pk, image.uid]))
        answer = api.get(f"/api/rounds/{rnd.pk}/next/").json()["image"]
        assert answer["uid"] == str(image.uid)
        api_png = api.get(answer["file_url"])
        assert api_png.content == page_png.content
        meta = api.get(f"/api/images/{image.uid}/").json()
        key = "real" if image.source == ImageSource.REAL else image.model_version.name
        seen.setdefault(key, {}).setdefault("views", []).append(
            {
                "page": _blank_page(page.content.decode(), image),
                "canvas": _blank_page(canvas, image),
                "api": {
                    k: v for k, v in answer.items() if k not in ("uid", "file_url")
                },
                "metadata": sorted(meta),
                "png": _png_facts(page_png.content),
                "headers": {
                    k: v
                    for k, v in page_png.headers.items()
                    if k not in ("Content-Disposition", "Date")
                },
            }
        )
        api.post(
            "/api/ratings/",
            {"round": rnd.pk, "image": str(image.uid), "score": 2},
            format="json",
        )
    assert set(seen) == {"real", "v1", "v2"}
    views = [view for source in seen.values() for view in source["views"]]
    first = views[0]
    for view in views[1:]:
        for part in ("page", "canvas", "api", "metadata", "png", "headers"):
            assert view[part] == first[part], part
    assert first["png"]["ihdr"] == (32, 32, 16, 0, 0)
    assert first["png"]["chunks"] == ["IHDR", "IDAT", "IEND"]
    assert first["api"]["width"] == 32 and first["api"]["value_unit"] == "HU"


def test_a_ct_rendition_holds_hounsfield_units(tmp_path, admin_user):
    (control,) = _ct_controls(tmp_path, n=1)
    rnd = round_create(
        name="ct", images=[control], created_by=admin_user, display_size=128
    )
    spec = round_presentation(rnd, "ct")
    codes = np.asarray(PILImage.open(io.BytesIO(display_bytes(rnd, control))))
    shown = spec.offset + spec.step * codes.astype(np.float64)
    expected = np.clip(ct_small_hu(), *CT_RANGE_HU)
    # Within the import's 16-bit step and the rendition's (both well under 1 HU).
    assert np.abs(shown - expected).max() < 0.5
    assert (spec.unit, spec.bit_depth, spec.channels) == ("HU", 16, 1)


def test_display_size_above_a_generators_resolution_is_refused(admin_user):
    made = _generated(_version("small"), 32, 1, seed=3)
    with pytest.raises(DomainError, match="larger than the 32 px"):
        round_create(name="big", images=made, created_by=admin_user, display_size=64)
    rnd = round_create(name="ok", images=made, created_by=admin_user, display_size=32)
    assert round_display_size(rnd) == 32


def test_real_only_rounds_show_at_256_and_non_square_images_are_cropped(
    admin_user,
):
    from tests.factories import ImageFactory

    wide = ImageFactory(modality="chest_xray")
    buffer = io.BytesIO()
    PILImage.fromarray(np.full((40, 80), 200, dtype=np.uint8)).save(buffer, "PNG")
    wide.file.save("wide.png", io.BytesIO(buffer.getvalue()))
    rnd = round_create(name="real", images=[wide], created_by=admin_user)
    facts = _png_facts(display_bytes(rnd, wide))
    assert facts["ihdr"] == (256, 256, 16, 0, 0)


def test_generated_images_of_a_grayscale_modality_are_stored_gray():
    version = _version("gray")
    (image,) = _generated(version, 16, 1, seed=4)
    assert image.channels == 1
    with image.file.open("rb") as handle:
        assert PILImage.open(handle).mode == "L"


def test_colour_modalities_stay_colour(admin_user):
    version = _version("fundus")
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    image = generated_image_create(
        picture=PILImage.fromarray(rgb),
        prompt="Fundus: normal",
        modality="fundus",
        model_version=version,
        generation={},
    )
    assert image.channels == 3
    rnd = round_create(name="fundus", images=[image], created_by=admin_user)
    facts = _png_facts(display_bytes(rnd, image))
    assert facts["ihdr"] == (16, 16, 8, 2, 0)
    pixels = np.asarray(PILImage.open(io.BytesIO(display_bytes(rnd, image))))
    assert pixels[..., 0].min() > 150 and pixels[..., 1].max() < 30


def test_file_length_does_not_depend_on_content(admin_user):
    """Uncompressed: a noisy real image and a flat generated one of the same
    size and layout are files of the same length."""
    version = _version("len")
    flat = generated_image_create(
        picture=PILImage.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)),
        prompt=PROMPT,
        modality="ct",
        model_version=version,
        generation={},
    )
    (noisy,) = _generated(version, 32, 1, seed=5)
    rnd = round_create(name="len", images=[flat, noisy], created_by=admin_user)
    assert len(display_bytes(rnd, flat)) == len(display_bytes(rnd, noisy))


def test_opening_a_round_writes_every_rendition_and_skips_a_missing_file(
    admin_user, caplog
):
    version = _version("prep")
    made = _generated(version, 16, 3, seed=6)
    made[0].file.storage.delete(made[0].file.name)
    rnd = round_create(name="prep", images=made, created_by=admin_user)
    assert round_display_prepare(rnd) == 2
    assert "no rendition" in caplog.text
    assert round_display_prepare(rnd) == 0


def test_physician_role_is_needed_for_a_rendition_of_someone_elses_image(
    client, make_user, admin_user
):
    made = _generated(_version("other"), 16, 2, seed=7)
    rnd = round_create(name="two", images=made, created_by=admin_user)
    stranger = make_user(Role.PHYSICIAN)
    client.force_login(stranger)
    assert (
        client.get(reverse("rate-image", args=[rnd.pk, made[0].uid])).status_code == 404
    )


def test_admins_set_the_display_size_on_the_page_and_the_api(client, admin_user):
    made = _generated(_version("sized"), 64, 2, seed=8)
    client.force_login(admin_user)
    response = client.post(
        reverse("rounds-create"),
        {
            "name": "too big",
            "raters_per_image": 1,
            "control_percent": 0,
            "source": "generated",
            "display_size": 128,
        },
    )
    assert response.status_code == 400
    assert "larger than the 64 px" in response.content.decode()
    api = APIClient()
    api.force_authenticate(admin_user)
    body = {"name": "sized", "image_uids": [str(m.uid) for m in made]}
    refused = api.post("/api/rounds/", {**body, "display_size": 128}, format="json")
    assert refused.status_code == 400 and "64 px" in refused.content.decode()
    tiny = api.post("/api/rounds/", {**body, "display_size": 8}, format="json")
    assert tiny.status_code == 400 and "display_size" in tiny.json()
    made_ok = api.post("/api/rounds/", {**body, "display_size": 48}, format="json")
    assert made_ok.status_code == 201 and made_ok.json()["display_size"] == 48


def test_a_large_round_is_prepared_by_the_worker(
    admin_user, monkeypatch, django_capture_on_commit_callbacks
):
    from annotations.services import rounds as round_services

    made = _generated(_version("many"), 16, 3, seed=9)
    queued: list[int] = []
    monkeypatch.setattr(round_services, "PREPARE_INLINE_MAX", 2)
    monkeypatch.setattr(
        round_services.round_display_prepare_task, "delay", queued.append
    )
    with django_capture_on_commit_callbacks(execute=True):
        rnd = round_create(
            name="many", images=made, created_by=admin_user, open_now=True
        )
    assert queued == [rnd.pk]
    from annotations.tasks import round_display_prepare_task

    assert round_display_prepare_task(rnd.pk) == 3


def test_a_small_round_is_prepared_when_it_opens(
    admin_user, django_capture_on_commit_callbacks
):
    made = _generated(_version("few"), 16, 2, seed=10)
    with django_capture_on_commit_callbacks(execute=True):
        rnd = round_create(
            name="few", images=made, created_by=admin_user, open_now=True
        )
    assert round_display_prepare(rnd) == 0
