"""Filtered generation for the Generate page, the API and the command:
sample, score with the reward model, keep the best (``generate_start`` in the
web process, ``generate_run`` in the worker)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from annotations.errors import DomainError
from annotations.models import (
    Image,
)
from annotations.services.generation import (
    generated_image_create,
)
from annotations.users import User

from ..models import (
    Job,
    JobKind,
    ModelVersion,
)
from .jobs import job_create
from .params import (
    GENERATE_MODES,
    SAMPLING_KEYS,
    check_diffusion,
    check_generate_work,
    check_keys,
    check_reward,
    check_sampling,
    modality_normalized,
    positive_int,
    seed_or_random,
)
from .worker import Progress, Reporter, device_for, generation_record, sampling_kwargs


@transaction.atomic
def generate_start(
    *,
    model_version: ModelVersion,
    reward_version: ModelVersion | None,
    prompt: str,
    modality: str,
    count: int,
    mode: str = "best_of_n",
    n: int = 4,
    threshold: float | None = None,
    created_by: User | None,
    max_attempts: int = 8,
    seed: int | None = None,
    sampling: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> Job:
    """Queue reward-filtered generation; kept and rejected images are stored.

    Threshold mode without a threshold uses the one calibrated on the reward
    model's held-out ratings. Without a reward model the images are sampled
    unfiltered (mode ``none``: every one kept, none scored).
    ``enqueue=False`` creates the job for a caller that runs it in-process
    (``manage.py generate``).
    """
    check_diffusion(model_version, "model_version")
    if reward_version is not None:
        check_reward(reward_version)
    if not prompt or not prompt.strip():
        raise DomainError("the prompt is empty")
    modality = modality_normalized(modality, "modality")
    positive_int(count, "count", maximum=256)
    positive_int(n, "n", maximum=64)
    positive_int(max_attempts, "max_attempts", maximum=64)
    if mode not in GENERATE_MODES:
        raise DomainError(f"mode must be one of {', '.join(GENERATE_MODES)}")
    if reward_version is None or mode == "none":
        mode, n, threshold, reward_version = "none", 1, None, None
    if threshold is None and mode == "threshold":
        assert reward_version is not None
        threshold = reward_version.metrics.get("threshold")
        if threshold is None:
            raise DomainError(
                "threshold mode needs a threshold: this reward model has no "
                "calibrated one; give it explicitly"
            )
    if threshold is not None and not 0 <= float(threshold) <= 1:
        raise DomainError("threshold must be between 0 and 1")
    sampling = dict(sampling or {})
    check_keys(sampling, SAMPLING_KEYS, "sampling")
    check_sampling(sampling)
    check_generate_work(count, mode, n, max_attempts, sampling)
    return job_create(
        kind=JobKind.GENERATE,
        enqueue=enqueue,
        created_by=created_by,
        params={
            "model_version_id": model_version.pk,
            "reward_version_id": getattr(reward_version, "pk", None),
            "prompt": prompt.strip(),
            "modality": modality,
            "count": count,
            "mode": mode,
            "n": n,
            "threshold": None if threshold is None else float(threshold),
            "max_attempts": max_attempts,
            "seed": seed_or_random(seed),
            "sampling": sampling,
        },
    )


class _CountingGenerator:
    """Passes a progress callback to each ``generate`` call filtering makes."""

    def __init__(self, backend: Any, reporter: Reporter, expected_calls: int) -> None:
        self.backend = backend
        self.reporter = reporter
        self.expected = max(expected_calls, 1)
        self.calls = 0

    def generate(self, requests: list[Any], **kwargs: Any) -> list[Any]:
        call = self.calls
        self.calls += 1

        def on_step(done: int, total: int) -> None:
            fraction = (call + done / max(total, 1)) / self.expected
            self.reporter(fraction, f"generating: {done} of {total} sampling steps")

        made: list[Any] = self.backend.generate(requests, progress=on_step, **kwargs)
        return made


def generate_run(job: Job, progress: Progress) -> dict[str, Any]:
    """Generate, score with the reward model, store kept and rejected images;
    without a reward model (mode ``none``) every image is kept, unscored."""
    from ..engine import GenerationRequest, RewardModel, filter_generate, load_backend

    p = job.params
    stored = Image.objects.filter(generation__job_id=job.pk).order_by("id")
    if not stored.exists():
        version = ModelVersion.objects.get(pk=p["model_version_id"])
        reward_id = p.get("reward_version_id")
        reward_version = ModelVersion.objects.get(pk=reward_id) if reward_id else None
        sampling = sampling_kwargs(p.get("sampling") or {})
        backend = load_backend(
            version.path, device=device_for((p.get("sampling") or {}).get("device"))
        )
        requests = [
            GenerationRequest(
                prompt=p["prompt"], modality=p["modality"], seed=p["seed"] + i
            )
            for i in range(int(p["count"]))
        ]
        if reward_version is None:
            counting = _CountingGenerator(backend, Reporter(progress, span=0.9), 1)
            plain = counting.generate(requests, **sampling)
            with transaction.atomic():
                for index, item in enumerate(plain):
                    record = generation_record(item, job=job)
                    record.update(kept=True, request_index=index, attempt=0)
                    generated_image_create(
                        picture=item.image,
                        prompt=item.prompt,
                        modality=item.modality or "",
                        model_version=version,
                        generation=record,
                    )
            stats: dict[str, Any] = {"n": 1, "generated": len(plain), "filtered": False}
            return _generate_result(job, stats)
        reward = RewardModel.load(reward_version.path)
        calls = 1 if p["mode"] == "best_of_n" else int(p["max_attempts"])
        result = filter_generate(
            _CountingGenerator(backend, Reporter(progress, span=0.9), calls),
            reward,
            requests,
            mode=p["mode"],
            n=int(p["n"]),
            threshold=p.get("threshold"),
            max_attempts=int(p["max_attempts"]),
            **sampling,
        )
        scored = [(s, True) for s in result.kept]
        scored += [(s, False) for s in result.rejected]
        with transaction.atomic():
            for item, kept in scored:
                generated_image_create(
                    picture=item.image,
                    prompt=item.prompt,
                    modality=item.modality,
                    model_version=version,
                    reward_score=item.reward,
                    generation={
                        "seed": item.seed,
                        "steps": item.provenance.get("steps"),
                        "guidance": item.provenance.get("guidance"),
                        "scheduler": item.provenance.get("scheduler"),
                        "prompt": item.prompt,
                        "modality": item.modality,
                        "engine_version": item.provenance.get("model_version"),
                        "job_id": job.pk,
                        "reward_version_id": reward_version.pk,
                        "kept": kept,
                        "request_index": item.request_index,
                        "attempt": item.attempt,
                        "probs": list(item.probs),
                        "uncertainty": item.uncertainty,
                    },
                )
        return _generate_result(job, result.stats)
    return _generate_result(job, dict(job.result.get("stats") or {}))


def _generate_result(job: Job, stats: dict[str, Any]) -> dict[str, Any]:
    p = job.params
    stored = Image.objects.filter(generation__job_id=job.pk).order_by("id")
    rows: dict[str, list[dict[str, Any]]] = {"kept": [], "rejected": []}
    for image in stored:
        g = image.generation
        rows["kept" if g.get("kept") else "rejected"].append(
            {
                "uid": image.uid.hex,
                "reward_score": image.reward_score,
                "seed": g.get("seed"),
                "request_index": g.get("request_index"),
                "attempt": g.get("attempt"),
                "uncertainty": g.get("uncertainty"),
            }
        )
    return {**rows, "stats": stats, "threshold": p.get("threshold")}
