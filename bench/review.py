"""Review page timing: one diffusion version with N reward-scored images.

Seeds N generated images (rows only, no files: the page renders URLs, not
pixels) into the database named on the command line, then times the review
page, its htmx re-filter, the last page, the API and a round made of every
kept image, through Django's test client (median of a few requests).

    python bench/review.py --images 20000 \
        --database-url postgres://postgres@127.0.0.1:5432/medrlhf_bench_review

Use a database of its own: the seed and the rounds it creates stay there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medrlhf.settings")
    sys.path.insert(0, str(REPO_ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _seed(n: int) -> Any:
    from annotations.models import Image, ImageSource
    from models_ml.models import ModelKind, ModelVersion

    name = f"bench review {n}"
    version = ModelVersion.objects.filter(name=name).first()
    if version is not None:
        return version
    version = ModelVersion.objects.create(
        name=name, kind=ModelKind.DIFFUSION, path="/bench"
    )
    rows = []
    for i in range(n):
        uid = uuid.uuid4()
        rows.append(
            Image(
                uid=uid,
                file=f"images/{uid.hex}/image.png",
                preview=f"images/{uid.hex}/preview.png",
                sha256="0" * 64,
                width=64,
                height=64,
                modality=("fundus", "ct")[i % 2],
                prompt=f"bench prompt {i % 50}",
                source=ImageSource.GENERATED,
                model_version=version,
                reward_score=(i * 7919 % n) / n,
                generation={"job_id": 1 + i // 100, "seed": i, "steps": 20},
            )
        )
    Image.objects.bulk_create(rows, batch_size=2000)
    return version


def _timed(label: str, call: Callable[[], Any], repeats: int) -> None:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        response = call()
        times.append(time.perf_counter() - start)
        if response.status_code not in (200, 201, 302):
            raise SystemExit(f"{label}: HTTP {response.status_code}")
    print(f"{label:52s} median {statistics.median(times) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    _setup(args.database_url)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client
    from django.test.utils import setup_test_environment

    from annotations.models import Role

    setup_test_environment()
    version = _seed(args.images)
    admin, _ = get_user_model().objects.get_or_create(username="bench-review-admin")
    admin.groups.add(Group.objects.get_or_create(name=Role.ADMIN)[0])
    client = Client()
    client.force_login(admin)
    q = {"model_version": version.pk, "threshold": "0.6"}
    r = args.repeats
    print(f"{args.images} scored images of one version; load {os.getloadavg()[0]:.1f}")
    _timed("review page, first page", lambda: client.get("/models/review/", q), r)
    _timed(
        "htmx re-filter at threshold 0.8",
        lambda: client.get(
            "/models/review/", {**q, "threshold": "0.8"}, HTTP_HX_REQUEST="true"
        ),
        r,
    )
    last = args.images // 48
    _timed(
        "review page, last page",
        lambda: client.get("/models/review/", {**q, "page": last}),
        r,
    )
    _timed(
        "kept, one modality, only images in no round",
        lambda: client.get(
            "/models/review/",
            {**q, "show": "kept", "modality": "fundus", "unused_only": "on"},
        ),
        r,
    )
    _timed(
        "API, 100 images",
        lambda: client.get("/api/review/images/", {**q, "limit": 100}),
        r,
    )
    _timed(
        "round from every kept image at 0.95 (5 %)",
        lambda: client.post(
            "/models/review/round/",
            {
                **q,
                "threshold": "0.95",
                "name": "bench",
                "raters_per_image": 1,
                "control_percent": 0,
                "selection": "all_kept",
                "open_now": "on",
            },
        ),
        max(1, r // 2),
    )


if __name__ == "__main__":
    main()
