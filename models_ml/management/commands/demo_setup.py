"""Leave a fresh install ready to use: demo data, one account per role, the
shipped base model, and an open round of that model's images.

Safe to run again: each step is skipped when its result already exists.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from annotations.models import Dataset, ExpertLevel, Image, Role, Round
from annotations.services.imports import dataset_import
from annotations.services.rounds import round_create
from annotations.services.users import user_create
from models_ml.engine import DEFAULT_STEPS

if TYPE_CHECKING:
    from annotations.users import User
    from models_ml.models import ModelVersion

DEMO_DATASET = "Demo: real images from scikit-image, pydicom and nibabel"
DEMO_MODEL_NAME = "Demo base model (tiny, 32 px)"
DEMO_MODEL_DIR = Path(settings.BASE_DIR) / "models_ml" / "demo_model"
DEMO_ACCOUNTS = (
    ("admin", Role.ADMIN, ExpertLevel.EXPERT),
    ("dr_alvarez", Role.PHYSICIAN, ExpertLevel.EXPERT),
    ("dr_chen", Role.PHYSICIAN, ExpertLevel.SPECIALIST),
    ("dr_okafor", Role.PHYSICIAN, ExpertLevel.TRAINEE),
    ("researcher", Role.RESEARCHER, ExpertLevel.SPECIALIST),
)
# The product's default sampler (ancestral DDPM, 50 steps, unguided).
DEMO_SAMPLING = {"batch_size": 16}


def demo_prompts(dataset: Dataset, per_modality: int) -> list[tuple[str, str]]:
    """The most frequent prompts of each modality in the dataset, most first."""
    counts = Counter(
        Image.objects.filter(dataset=dataset, quarantined=False).values_list(
            "prompt", "modality"
        )
    )
    by_modality: dict[str, list[tuple[int, str]]] = {}
    for (prompt, modality), n in counts.items():
        by_modality.setdefault(modality, []).append((-n, prompt))
    return [
        (prompt, modality)
        for modality in sorted(by_modality)
        for _, prompt in sorted(by_modality[modality])[:per_modality]
    ]


class Command(BaseCommand):
    help = (
        "Load demo data made from real medical images, accounts, the shipped "
        "base model and an open round of its images."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--per-modality", type=int, default=40)
        parser.add_argument(
            "--round",
            choices=("generated", "queued", "real"),
            default="generated",
            help="generated: make the first round's images now (about a minute "
            "on a CPU); queued: leave that to the worker; real: a round of real "
            "images only",
        )
        parser.add_argument("--prompts-per-modality", type=int, default=2)
        parser.add_argument("--images-per-prompt", type=int, default=3)
        parser.add_argument(
            "--control-share",
            type=float,
            default=0.25,
            help="share of real control images in the generated round",
        )
        parser.add_argument(
            "--steps", type=int, default=DEFAULT_STEPS, help="sampler steps"
        )
        parser.add_argument(
            "--round-size", type=int, default=48, help="images in a real round"
        )

    def handle(self, *args: Any, **o: Any) -> None:
        dataset = self._dataset(o["per_modality"])
        admin = self._accounts()
        version = self._base_model(dataset, admin)
        if not Round.objects.exists():
            if o["round"] == "real" or version is None:
                self._real_round(dataset, admin, o["round_size"])
            else:
                self._generated_round(dataset, admin, version, o)
        self.stdout.write(self.style.SUCCESS("demo ready"))

    def _dataset(self, per_modality: int) -> Dataset:
        from models_ml.engine import build_demo_dataset

        dataset = Dataset.objects.filter(name=DEMO_DATASET).first()
        if dataset is not None:
            return dataset
        out = settings.VAR_DIR / "demo"
        csv_path = out / "metadata.csv"
        if not csv_path.exists():
            self.stdout.write("building demo images from package data ...")
            build_demo_dataset(out, per_modality=per_modality)
        self.stdout.write("importing demo dataset ...")
        dataset, report = dataset_import(name=DEMO_DATASET, source=csv_path)
        self.stdout.write(
            f"  {report.images} images: "
            + ", ".join(f"{k} {v}" for k, v in sorted(report.modalities.items()))
        )
        return dataset

    def _accounts(self) -> User | None:
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
        return User.objects.filter(groups__name=Role.ADMIN).first()

    def _base_model(self, dataset: Dataset, admin: User | None) -> ModelVersion | None:
        """Register the base model shipped in the repository, once."""
        import json

        from models_ml.models import ModelKind, ModelVersion

        from ...services.base_training import model_version_register

        folder = DEMO_MODEL_DIR.resolve()
        existing = ModelVersion.objects.filter(
            kind=ModelKind.DIFFUSION, path=str(folder)
        ).first()
        if existing is not None:
            return existing
        if not (folder / "medrlhf_model.json").is_file():
            self.stdout.write(self.style.WARNING(f"no demo model in {folder}"))
            return None
        training = folder / "training.json"
        params = json.loads(training.read_text()) if training.is_file() else {}
        version = model_version_register(
            name=DEMO_MODEL_NAME,
            kind=ModelKind.DIFFUSION,
            path=folder,
            created_by=admin,
            dataset=dataset,
            params=params,
        )
        self.stdout.write(
            f"registered base model {version.name!r} (the worker draws its sample grid)"
        )
        return version

    def _real_round(self, dataset: Dataset, admin: User | None, size: int) -> None:
        pool = list(Image.objects.filter(dataset=dataset, quarantined=False))
        chosen = random.Random(0).sample(  # noqa: S311 (a fixed, reproducible demo)
            pool, min(size, len(pool))
        )
        rnd = round_create(
            name="Demo round 1: real images",
            description="Rate how well each image matches its prompt.",
            images=chosen,
            created_by=admin,
            raters_per_image=2,
            open_now=True,
        )
        self.stdout.write(f"opened round {rnd.name!r} with {len(chosen)} images")

    def _generated_round(
        self,
        dataset: Dataset,
        admin: User | None,
        version: ModelVersion,
        o: dict[str, Any],
    ) -> None:
        from models_ml import tasks
        from models_ml.models import JobStatus

        from ...services.round_generation import round_generate_start

        now = o["round"] == "generated"
        prompts = demo_prompts(dataset, o["prompts_per_modality"])
        job = round_generate_start(
            model_version=version,
            prompts=prompts,
            images_per_prompt=o["images_per_prompt"],
            created_by=admin,
            name="Demo round 1: the base model's images",
            raters_per_image=2,
            control_share=o["control_share"],
            control_pool=Image.objects.filter(dataset=dataset, quarantined=False),
            seed=0,
            sampling={**DEMO_SAMPLING, "steps": o["steps"], "device": "cpu"},
            enqueue=not now,
        )
        total = len(prompts) * o["images_per_prompt"]
        if not now:
            self.stdout.write(f"queued job {job.pk}: {total} images for the round")
            return
        self.stdout.write(f"generating {total} images with the base model ...")
        started = time.monotonic()
        tasks.ml_generate_round(job.pk)  # the task itself, in this process
        job.refresh_from_db()
        if job.status != JobStatus.SUCCEEDED:
            self.stdout.write(self.style.ERROR(f"generation failed: {job.error}"))
            self._real_round(dataset, admin, o["round_size"])
            return
        self.stdout.write(
            f"opened round {job.result['round_id']} with {job.result['generated']} "
            f"generated and {job.result['controls']} real images "
            f"({time.monotonic() - started:.0f} s)"
        )
