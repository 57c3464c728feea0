"""How long one retraining run takes on the embedded default, step by step.

In a throwaway ``MEDRLHF_VAR_DIR`` (SQLite, the shipped demo model, the demo
data): ``demo_setup`` opens the demo round, two simulated physicians (the
program of ``simulated_raters``) rate all of it, and one retraining run with
the product's defaults (the Retraining form's: reward model, the default
objective's fine-tune, its control, and a comparison round of ``--prompts``
prompts x ``--images_per_prompt`` images per arm) runs job by job in this
process, as the ML worker would. Prints the seconds of each step and the
total; the target is 10 minutes on 2 cores.

    OMP_NUM_THREADS=2 python bench/retraining.py [--prompts 7] [--images_per_prompt 8]
        [--finetune_steps 300 --dpo_beta 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
OUT = ROOT / "bench" / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=7)
    parser.add_argument("--images_per_prompt", type=int, default=8)
    parser.add_argument(
        "--best_of_n", type=int, default=None, help="default: the form's default"
    )
    parser.add_argument("--objective", help="default: the product's default")
    parser.add_argument(
        "--finetune_steps",
        type=int,
        help="steps of the fine-tune and its control (default: the recipe's)",
    )
    parser.add_argument(
        "--dpo_beta", type=float, help="DPO temperature (default: the recipe's)"
    )
    parser.add_argument("--var_dir", type=Path, help="default: a new temporary one")
    args = parser.parse_args()

    var_dir = args.var_dir or Path(tempfile.mkdtemp(prefix="medrlhf-bench-"))
    os.environ["MEDRLHF_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medrlhf.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from annotations.models import Dataset, Role, Round
    from annotations.services.ratings import assignment_next, rating_submit
    from models_ml import services_runs, tasks
    from models_ml.chains import retraining_round_start
    from models_ml.engine.experiments.simulated_raters import fit_simulated_rater
    from models_ml.engine.images import load_pil
    from models_ml.forms import RetrainingForm
    from models_ml.models import Job, JobKind, JobStatus, ModelVersion
    from models_ml.selectors import default_diffusion_version

    call_command("migrate", verbosity=0)
    began = time.monotonic()
    call_command("demo_setup", "--round", "generated", verbosity=0)
    setup_seconds = time.monotonic() - began
    rnd = Round.objects.get()
    version = default_diffusion_version()
    dataset = Dataset.objects.get()
    real = [
        (im.file.path, im.prompt, im.modality)
        for im in dataset.images.filter(quarantined=False)
    ]
    rater = fit_simulated_rater(real, resolution=version_resolution(version), seed=0)
    from django.contrib.auth import get_user_model

    physicians = list(
        get_user_model().objects.filter(groups__name=Role.PHYSICIAN).order_by("pk")
    )[:2]
    began = time.monotonic()
    ratings = 0
    for physician in physicians:
        while (assignment := assignment_next(round=rnd, rater=physician)) is not None:
            image = assignment.round_image.image
            (score,) = rater.rate([load_pil(image.file.path)], [image.modality])
            rating_submit(round=rnd, rater=physician, image=image, score=score)
            ratings += 1
    rating_seconds = time.monotonic() - began

    form = RetrainingForm(
        data={
            "diffusion_version": version.pk,
            "reward_epochs": 30,
            "ensemble_size": 3,
            "finetune_steps": args.finetune_steps or "",
            "objective": args.objective or "",
            "train_control": "on",
            "open_next_round": "on",
            "best_of_n": (
                RetrainingForm.base_fields["best_of_n"].initial
                if args.best_of_n is None
                else args.best_of_n
            ),
            "expected_gain": 10,
            "images_per_prompt": args.images_per_prompt,
        }
    )
    assert form.is_valid(), form.errors
    params = form.service_params()
    if args.dpo_beta is not None:
        params["finetune"]["dpo_beta"] = args.dpo_beta
    params["round"]["prompts"] = [list(p) for p in rnd.settings["prompts"]][
        : args.prompts
    ]
    admin = get_user_model().objects.filter(groups__name=Role.ADMIN).first()
    job = retraining_round_start(
        created_by=admin,
        diffusion_version=version,
        params=params,
        open_next_round=True,
        train_control=True,
    )
    bodies = {
        JobKind.TRAIN_REWARD: services_runs.reward_model_train_run,
        JobKind.FINETUNE: services_runs.finetune_run,
        JobKind.GENERATE_ROUND: services_runs.round_generate_run,
        JobKind.SCORE: services_runs.round_score_run,
    }
    steps = []
    while job is not None:
        began = time.monotonic()
        tasks.run_job(job.pk, bodies[job.kind])
        job.refresh_from_db()
        seconds = time.monotonic() - began
        name = (job.params.get("chain") or {}).get("step", job.kind)
        steps.append({"step": name, "title": job.title, "seconds": round(seconds, 1)})
        print(f"{name:>15}: {seconds:6.1f} s  {job.title}", flush=True)
        if job.status != JobStatus.SUCCEEDED:
            raise SystemExit(f"{name} {job.status}: {job.error}")
        next_id = (job.result or {}).get("next_job_id")
        job = Job.objects.filter(pk=next_id).first() if next_id else None
    total = sum(s["seconds"] for s in steps)
    compare = Round.objects.exclude(pk=rnd.pk).get()
    result = {
        "var_dir": str(var_dir),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": os.getloadavg(),
        "demo_setup_seconds": round(setup_seconds, 1),
        "ratings": ratings,
        "rating_seconds": round(rating_seconds, 1),
        "objective": params["finetune"]["objective"],
        "finetune_steps": args.finetune_steps,
        "dpo_beta": args.dpo_beta,
        "comparison_images": compare.items.filter(is_control=False).count(),
        "steps": steps,
        "total_seconds": round(total, 1),
        "versions": list(ModelVersion.objects.values_list("name", flat=True)),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "retraining.json").write_text(json.dumps(result, indent=2))
    print(
        f"retraining run: {total:.0f} s in all ({total / 60:.1f} min; target 10 min) "
        f"for a comparison round of {result['comparison_images']} images; "
        f"demo setup {setup_seconds:.0f} s, {ratings} ratings"
    )


def version_resolution(version: object) -> int:
    from models_ml.engine.backends.base import ModelInfo

    return ModelInfo.read(Path(version.path)).resolution  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
