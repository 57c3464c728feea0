"""What one presentation per round costs: writing the renditions when a round
opens, and serving one to a physician.

Builds, in a throwaway SQLite database, a round of real 16-bit CT controls
(512 px, Hounsfield units) and generated 8-bit images (32 px), opens it
(which writes every rendition), then serves every image once through the
rating page's URL with Django's test client, side by side with serving the
stored preview the way the page did before. Prints milliseconds per image for
each, the rendition's bytes, and the ratio of serving a rendition to serving
a preview.

    .venv/bin/python bench/presentation.py [--real 100] [--generated 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _setup(var_dir: str) -> None:
    os.environ["MEDRLHF_VAR_DIR"] = var_dir
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medrlhf.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _images(n_real: int, n_generated: int) -> list:
    import hashlib

    import numpy as np
    from django.core.files.base import ContentFile

    from annotations.models import Image, ImageSource
    from models_ml.engine.readers import DecodedImage, encode_png, encode_preview_png
    from models_ml.models import ModelKind, ModelVersion

    rng = np.random.default_rng(0)
    version = ModelVersion.objects.create(
        name="bench", kind=ModelKind.DIFFUSION, path="/bench"
    )
    made = []
    for i in range(n_real + n_generated):
        real = i < n_real
        # A real 512 px 16-bit CT, or a generated 32 px 8-bit image.
        side, depth, center, width, kind = (
            (512, 16, 20000.0, 8000.0, "dicom")
            if real
            else (32, 8, 127.5, 256.0, "generated")
        )
        dtype = np.uint16 if depth == 16 else np.uint8
        decoded = DecodedImage(
            pixels=rng.integers(0, np.iinfo(dtype).max, (side, side), dtype=dtype),
            bit_depth=depth,
            window_center=center,
            window_width=width,
            source_format=kind,
        )
        full = encode_png(decoded)
        image = Image(
            sha256=hashlib.sha256(full).hexdigest(),
            width=decoded.width,
            height=decoded.height,
            bit_depth=decoded.bit_depth,
            modality="ct",
            prompt="CT: axial chest",
            source=ImageSource.REAL if real else ImageSource.GENERATED,
            model_version=None if real else version,
            header={"value_offset": -1024.0, "value_step": 4096 / 65535}
            if real
            else {},
            window_center=decoded.window_center,
            window_width=decoded.window_width,
        )
        image.file.save("image.png", ContentFile(full), save=False)
        image.preview.save(
            "preview.png", ContentFile(encode_preview_png(decoded)), save=False
        )
        image.save()
        made.append(image)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=int, default=100)
    parser.add_argument("--generated", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as var_dir:
        _setup(var_dir)
        from django.db import transaction
        from django.test import Client
        from django.urls import reverse

        from annotations.models import Role
        from annotations.presentation import round_display_prepare
        from annotations.rating.serving import assignment_next
        from annotations.services.rounds import round_create, round_open
        from annotations.services.users import user_create

        images = _images(args.real, args.generated)
        admin, _ = user_create(username="admin", role=Role.ADMIN)
        physician, _ = user_create(username="dr", role=Role.PHYSICIAN)
        rnd = round_create(name="bench", images=images, created_by=admin)
        started = time.perf_counter()
        with transaction.atomic():
            written = round_display_prepare(rnd)
        prepare_s = time.perf_counter() - started
        round_open(round=rnd, actor=admin)  # finds every rendition written
        # Serve every image to the physician (an assignment each).
        for _ in images:
            assignment = assignment_next(round=rnd, rater=physician)
            assignment.completed_at = assignment.served_at
            assignment.save(update_fields=["completed_at"])
        admin_client, client = Client(), Client()
        client.force_login(physician)
        admin_client.force_login(admin)
        rendition_ms, preview_ms, sizes = [], [], set()
        for image in images:
            t0 = time.perf_counter()
            response = client.get(reverse("rate-image", args=[rnd.pk, image.uid]))
            rendition_ms.append(1000 * (time.perf_counter() - t0))
            assert response.status_code == 200, response.status_code
            sizes.add(len(response.content))
            t0 = time.perf_counter()
            old = admin_client.get(reverse("image-preview", args=[image.uid]))
            assert old.status_code == 200, old.status_code
            b"".join(old.streaming_content)
            preview_ms.append(1000 * (time.perf_counter() - t0))
        per_image = 1000 * prepare_s / max(written, 1)
        print(f"renditions written at open: {written} in {prepare_s:.2f} s")
        print(f"  {per_image:.1f} ms per image (real 512 px 16-bit, generated 32 px)")
        print(f"rendition bytes: {sorted(sizes)} (one length for every image)")
        rend, prev = statistics.median(rendition_ms), statistics.median(preview_ms)
        print(f"serving, median ms per image: rendition {rend:.2f}, preview {prev:.2f}")
        print(f"  ratio rendition / preview: {rend / prev:.2f}")


if __name__ == "__main__":
    main()
