"""Agreement page benchmark: how long the figures of a large round take.

Seeds a fresh PostgreSQL database with one round of ``--images`` images (a
tenth of them real controls, ``--agreement`` of them in the agreement set),
``--physicians`` physicians who each rate the agreement set plus
``--extra`` other images and see 5 % of their images again, and one reward
model that scored every image.  Then times, each ``--repeat`` times:

- ``agreement_report`` (every figure of the page but the reward model),
- ``reward_ceiling_report``,
- the whole page (``GET /rounds/<id>/agreement/`` through Django's test client).

    python bench/agreement.py [--physicians 20] [--images 5000] [--n-boot 1000]

Figures go to stdout and ``bench/out/agreement.json``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402
from benchdb import log  # noqa: E402

DB_NAME = "medrlhf_bench_agreement"


def seed(args: argparse.Namespace) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from annotations.models import (
        Image,
        ImageSource,
        Rating,
        Round,
        RoundImage,
        RoundStatus,
    )
    from models_ml.models import ImageScore, ModelKind, ModelVersion

    rng = random.Random(0)
    diffusion = ModelVersion.objects.create(
        name="bench diffusion", kind=ModelKind.DIFFUSION, path="/x"
    )
    reward = ModelVersion.objects.create(
        name="bench reward", kind=ModelKind.REWARD, path="/y"
    )
    n_real = args.images // 10
    truth = [rng.uniform(0.6, 3.4) for _ in range(args.images)]
    Image.objects.bulk_create(
        Image(
            file=f"bench/{i}.png",
            preview=f"bench/{i}-preview.png",
            sha256=f"{i:064x}",
            width=64,
            height=64,
            modality=("ct", "fundus", "chest_xray")[i % 3],
            prompt=f"bench image {i}",
            source=ImageSource.REAL if i < n_real else ImageSource.GENERATED,
            model_version=None if i < n_real else diffusion,
        )
        for i in range(args.images)
    )
    images = list(Image.objects.order_by("id").values_list("id", flat=True))
    rnd = Round.objects.create(
        name="bench agreement",
        status=RoundStatus.RATING,
        raters_per_image=2,
        reward_model_version=reward,
    )
    agreement = set(rng.sample(range(args.images), args.agreement))
    RoundImage.objects.bulk_create(
        RoundImage(
            round=rnd,
            image_id=images[i],
            is_control=i < n_real,
            in_agreement_set=i in agreement,
            shuffle_key=rng.getrandbits(62),
        )
        for i in range(args.images)
    )
    ImageScore.objects.bulk_create(
        ImageScore(
            image_id=images[i],
            model_version=reward,
            reward=min(1.0, max(0.0, (truth[i] - 1) / 2)),
            expected_score=min(3.0, max(1.0, truth[i] + rng.gauss(0, 0.4))),
            probs=[0.2, 0.3, 0.5],
            spread=0.1,
        )
        for i in range(args.images)
    )
    group, _ = Group.objects.get_or_create(name="physician")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ratings = []
    others = [i for i in range(args.images) if i not in agreement]
    for p in range(args.physicians):
        user = get_user_model().objects.create(username=f"bench_dr_{p:02d}")
        user.groups.add(group)
        sigma = 0.3 + 0.05 * p
        mine = sorted(agreement) + rng.sample(others, args.extra)
        rng.shuffle(mine)
        again = rng.sample(mine, len(mine) // 20)
        at = start
        for k, i in enumerate([*mine, *again]):
            score = min(3, max(1, round(truth[i] + rng.gauss(0, sigma))))
            ratings.append(
                Rating(
                    rater=user,
                    image_id=images[i],
                    round=rnd,
                    score=score,
                    is_repeat=k >= len(mine),
                    time_taken_ms=int(max(1500, rng.gauss(12_000, 4_000))),
                )
            )
            at += timedelta(seconds=20)
    Rating.objects.bulk_create(ratings, batch_size=5000)
    # created_at is auto_now_add; spread the ratings over sessions afterwards.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE annotations_rating SET created_at = %s + "
            "(id * interval '20 seconds')",
            [start],
        )
    return {"round": rnd, "ratings": len(ratings)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--physicians", type=int, default=20)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--agreement", type=int, default=500)
    parser.add_argument("--extra", type=int, default=750)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    url = benchdb.database_url(DB_NAME)
    benchdb.database_create(url, drop=True)
    benchdb.django_setup(url)
    benchdb.migrate()
    t0 = time.perf_counter()
    seeded = seed(args)
    log(f"seeded {seeded['ratings']} ratings in {time.perf_counter() - t0:.1f} s")

    from django.test import Client
    from django.test.utils import setup_test_environment

    from annotations.models import Role
    from annotations.rater_report import agreement_report, reward_ceiling_report
    from tests.factories import UserFactory

    setup_test_environment()
    rnd = seeded["round"]
    client = Client()
    client.force_login(UserFactory(username="bench_researcher", role=Role.RESEARCHER))
    timings: dict[str, list[float]] = {"agreement_report": [], "reward": [], "page": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        agreement_report(round=rnd, n_boot=args.n_boot)
        timings["agreement_report"].append(time.perf_counter() - t)
        t = time.perf_counter()
        reward_ceiling_report(round=rnd, n_boot=args.n_boot)
        timings["reward"].append(time.perf_counter() - t)
        t = time.perf_counter()
        response = client.get(f"/rounds/{rnd.pk}/agreement/")
        assert response.status_code == 200, response.status_code
        timings["page"].append(time.perf_counter() - t)
    result = {
        "physicians": args.physicians,
        "images": args.images,
        "agreement_set": args.agreement,
        "ratings": seeded["ratings"],
        "n_boot": args.n_boot,
        "seconds_median": {k: sorted(v)[len(v) // 2] for k, v in timings.items()},
        "machine": benchdb.machine(),
    }
    for key, value in result["seconds_median"].items():
        log(f"{key}: {value:.2f} s (median of {args.repeat})")
    benchdb.write_json("agreement.json", result)


if __name__ == "__main__":
    main()
