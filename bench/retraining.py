"""How long one retraining run takes on the embedded default, step by step.

In a throwaway ``MEDRLHF_VAR_DIR`` (SQLite, the shipped demo model, the demo
data): ``demo_setup`` opens the demo round, two simulated physicians (the
program of ``simulated_raters``) rate all of it, and one retraining run with
the product's defaults (the Retraining form's: reward model, the default
objective's fine-tune, its control, and a comparison round of ``--prompts``
prompts x ``--images_per_prompt`` images per arm) runs on a real Celery ML
worker, as ``run_embedded`` starts it. Prints when each step started and how
long it took, and the total from queueing the run to the round opening; the
target is 10 minutes on 2 cores.

``--ml_concurrency 1 2`` runs the same run once per worker concurrency, one
after the other from the same rated demo (2: the fine-tune and its control
side by side, the embedded runtime's default on two cores; 1: one after the
other), and prints their ratio.

    OMP_NUM_THREADS=2 python bench/retraining.py [--ml_concurrency 1 2]
        [--prompts 7] [--images_per_prompt 8] [--finetune_steps 300 --dpo_beta 1500]
        [--mixed_precision bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
OUT = ROOT / "bench" / "out"
RUN_TIMEOUT_S = 3 * 3600


def parse_args() -> argparse.Namespace:
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
    parser.add_argument(
        "--mixed_precision",
        choices=("no", "bf16"),
        help="autocast of the fine-tune and its control (default: the "
        "product's, no); bf16 is fast on CPUs with AMX",
    )
    parser.add_argument(
        "--ml_concurrency",
        type=int,
        nargs="+",
        help="ML jobs the worker runs at once; several: one run each "
        "(default: the embedded runtime's)",
    )
    parser.add_argument("--var_dir", type=Path, help="default: a new temporary one")
    parser.add_argument("--run_in", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def django_setup(var_dir: Path) -> None:
    os.environ["MEDRLHF_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medrlhf.settings")
    import django

    django.setup()


def main() -> None:
    # Stopped with SIGTERM (kill, pkill), leave as on Ctrl-C: the context
    # managers' cleanup runs, so the Celery worker stops too instead of
    # finishing the run's jobs on its own.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args()
    if args.run_in:
        return run_one(args)
    var_dir = args.var_dir or Path(tempfile.mkdtemp(prefix="medrlhf-bench-"))
    django_setup(var_dir)
    from django.db import connection

    from annotations.management.commands.run_embedded import ml_concurrency

    rated = rate_demo(var_dir)
    connection.close()  # the copies below take the whole database
    results = []
    for concurrency in args.ml_concurrency or [ml_concurrency()]:
        copy = var_dir.with_name(f"{var_dir.name}-ml{concurrency}")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(var_dir, copy)
        # The grid's task, still queued: drawn already.
        for message in (copy / "broker" / "queue").glob("*"):
            message.unlink()
        child = [sys.executable, __file__, "--run_in", str(copy)]
        child += ["--ml_concurrency", str(concurrency)]
        for flag in ("prompts", "images_per_prompt", "best_of_n", "objective"):
            if getattr(args, flag) is not None:
                child += [f"--{flag}", str(getattr(args, flag))]
        for flag in ("finetune_steps", "dpo_beta", "mixed_precision"):
            if getattr(args, flag) is not None:
                child += [f"--{flag}", str(getattr(args, flag))]
        print(f"-- ML worker concurrency {concurrency} ({copy})", flush=True)
        proc = subprocess.Popen(child)  # noqa: S603
        try:
            if proc.wait() != 0:
                raise subprocess.CalledProcessError(proc.returncode, child)
        finally:
            if proc.poll() is None:  # stopped early: let it stop its worker
                proc.terminate()
                proc.wait()
        results.append(json.loads((copy / "bench-retraining.json").read_text()))
    summary = {**rated, "runs": results}
    if len(results) > 1:
        base = results[0]["total_seconds"]
        for run in results[1:]:
            print(
                f"concurrency {run['ml_concurrency']} / "
                f"{results[0]['ml_concurrency']}: "
                f"{run['total_seconds'] / base:.2f} of the time"
            )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "retraining.json").write_text(json.dumps(summary, indent=2))


def rate_demo(var_dir: Path) -> dict[str, Any]:
    """The demo, its round rated by two simulated physicians."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotations.models import Dataset, Role, Round
    from annotations.rating.serving import assignment_next
    from annotations.rating.submit import rating_submit
    from models_ml.engine.images import load_pil
    from models_ml.samples import version_samples_make
    from models_ml.selectors import default_diffusion_version
    from research.simulated_raters import fit_simulated_rater

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
    # The base's sample grid, which demo_setup leaves to the worker: drawn
    # here, so that the runs below time the retraining alone.
    version_samples_make(version)
    rater = fit_simulated_rater(real, resolution=version_resolution(version), seed=0)
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
    return {
        "var_dir": str(var_dir),
        "demo_setup_seconds": round(setup_seconds, 1),
        "ratings": ratings,
        "rating_seconds": round(time.monotonic() - began, 1),
    }


def run_one(args: argparse.Namespace) -> None:
    """One retraining run in ``args.run_in`` on a worker of one concurrency."""
    var_dir = args.run_in
    django_setup(var_dir)
    from django.contrib.auth import get_user_model

    from annotations.models import Role, Round
    from models_ml.forms import RetrainingForm
    from models_ml.models import Job, JobStatus, ModelVersion
    from models_ml.selectors import default_diffusion_version
    from models_ml.services.chains import retraining_round_start

    (concurrency,) = args.ml_concurrency
    rnd = Round.objects.get()
    version = default_diffusion_version()
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
    if args.mixed_precision is not None:
        params["finetune"]["mixed_precision"] = args.mixed_precision
    params["round"]["prompts"] = [list(p) for p in rnd.settings["prompts"]][
        : args.prompts
    ]
    admin = get_user_model().objects.filter(groups__name=Role.ADMIN).first()
    log = var_dir / "worker.log"
    with ml_worker(concurrency, log):
        first = retraining_round_start(
            created_by=admin,
            diffusion_version=version,
            params=params,
            open_next_round=True,
            train_control=True,
        )
        chain_id = first.params["chain"]["id"]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            jobs = list(Job.objects.filter(params__chain__id=chain_id).order_by("pk"))
            stopped = (JobStatus.FAILED, JobStatus.CANCELLED)
            failed = [j for j in jobs if j.status in stopped]
            if failed:
                raise SystemExit(f"{failed[0]}: {failed[0].error}\n{log}")
            last = jobs[-1]
            # The round may open before the other fine-tune has drawn its
            # version's sample grid: the run ends when every job has.
            done = all(j.is_finished for j in jobs)
            if last.params["chain"]["step"] == "generate_round" and done:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the run did not finish; see {log}")
            time.sleep(2)
    queued = jobs[0].created_at
    steps = []
    for job in jobs:
        step = job.params["chain"]["step"]
        start = (job.started_at - queued).total_seconds()
        seconds = (job.finished_at - job.started_at).total_seconds()
        steps.append(
            {
                "step": step,
                "title": job.title,
                "started_after": round(start, 1),
                "seconds": round(seconds, 1),
            }
        )
        print(
            f"{step:>15}: from {start:6.1f} s, {seconds:6.1f} s  {job.title}",
            flush=True,
        )
    total = (max(j.finished_at for j in jobs) - queued).total_seconds()
    compare = Round.objects.exclude(pk=rnd.pk).get()
    result = {
        "var_dir": str(var_dir),
        "ml_concurrency": concurrency,
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": os.getloadavg(),
        "objective": params["finetune"]["objective"],
        "finetune_steps": args.finetune_steps,
        "dpo_beta": args.dpo_beta,
        "mixed_precision": args.mixed_precision,
        "comparison_images": compare.items.filter(is_control=False).count(),
        "steps": steps,
        "total_seconds": round(total, 1),
        "versions": list(ModelVersion.objects.values_list("name", flat=True)),
    }
    (var_dir / "bench-retraining.json").write_text(json.dumps(result, indent=2))
    print(
        f"retraining run: {total:.0f} s in all ({total / 60:.1f} min; target 10 min) "
        f"for a comparison round of {result['comparison_images']} images, "
        f"ML worker concurrency {concurrency}"
    )


@contextmanager
def ml_worker(concurrency: int, log: Path) -> Iterator[None]:
    """The embedded runtime's ML worker (and default queue; the tests'
    launcher), ready before the run is queued, as it is when an admin
    starts one; it keeps this process's OMP_NUM_THREADS."""
    from tests.worker import celery_worker

    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count())
    env = {"OMP_NUM_THREADS": threads}
    with celery_worker(log=log, concurrency=concurrency, env=env) as proc:
        deadline = time.monotonic() + 120
        while "ready." not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start; see {log}")
            time.sleep(0.5)
        yield


def version_resolution(version: object) -> int:
    from models_ml.engine.backends.base import ModelInfo

    return ModelInfo.read(Path(version.path)).resolution  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
