"""Leave a fresh install ready to use: demo data, one account per role, a round.

Safe to run again: each step is skipped when its result already exists.
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from annotations.models import Dataset, ExpertLevel, Image, Role, Round
from annotations.services.imports import dataset_import
from annotations.services.rounds import round_create
from annotations.services.users import user_create

DEMO_DATASET = "Demo: real images from scikit-image, pydicom and nibabel"
DEMO_ACCOUNTS = (
    ("admin", Role.ADMIN, ExpertLevel.EXPERT),
    ("dr_alvarez", Role.PHYSICIAN, ExpertLevel.EXPERT),
    ("dr_chen", Role.PHYSICIAN, ExpertLevel.SPECIALIST),
    ("dr_okafor", Role.PHYSICIAN, ExpertLevel.TRAINEE),
    ("researcher", Role.RESEARCHER, ExpertLevel.SPECIALIST),
)


class Command(BaseCommand):
    help = "Load demo data made from real medical images, accounts and an open round."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--per-modality", type=int, default=40)
        parser.add_argument("--round-size", type=int, default=48)

    def handle(self, *args: Any, **o: Any) -> None:
        from models_ml.engine.demo import build_demo_dataset

        dataset = Dataset.objects.filter(name=DEMO_DATASET).first()
        if dataset is None:
            out = settings.VAR_DIR / "demo"
            csv_path = out / "metadata.csv"
            if not csv_path.exists():
                self.stdout.write("building demo images from package data ...")
                build_demo_dataset(out, per_modality=o["per_modality"])
            self.stdout.write("importing demo dataset ...")
            dataset, report = dataset_import(name=DEMO_DATASET, source=csv_path)
            self.stdout.write(
                f"  {report.images} images: "
                + ", ".join(f"{k} {v}" for k, v in sorted(report.modalities.items()))
            )
        User = get_user_model()
        if not User.objects.exists():
            self.stdout.write(
                self.style.WARNING(
                    "accounts created; these passwords are shown once, write them down:"
                )
            )
            for username, role, level in DEMO_ACCOUNTS:
                _, password = user_create(
                    username=username, role=role, expert_level=level
                )
                self.stdout.write(f"  {role:<10} {username:<12} {password}")
        if not Round.objects.exists():
            admin = User.objects.filter(groups__name=Role.ADMIN).first()
            pool = list(Image.objects.filter(dataset=dataset, quarantined=False))
            chosen = random.Random(0).sample(pool, min(o["round_size"], len(pool)))
            rnd = round_create(
                name="Demo round 1: real images",
                description="Rate how well each image matches its prompt.",
                images=chosen,
                created_by=admin,
                raters_per_image=2,
                open_now=True,
            )
            self.stdout.write(f"opened round {rnd.name!r} with {len(chosen)} images")
        self.stdout.write(self.style.SUCCESS("demo ready"))
