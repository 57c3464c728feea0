"""ML engine benchmark: the engine against plain diffusers code, side by side.

One process times both sides in alternation, so both see the same machine load:

1. training samples/s: ``models_ml.engine.train.train`` against a plain
   diffusers loop (UNet2DConditionModel + DDPMScheduler + AdamW, prompt
   encoder run on every step) on the same model config, data, batch size and
   steps. The plain loop runs one step from inside the engine's progress
   callback, so engine step k and plain step k run back to back;
2. generation images/s: ``backend.generate`` against the plain sampling loop
   (same UNet weights, DDIM, steps, guidance, batch), alternating per batch;
   and the share of ``filter_generate`` (best-of-N) time that is not
   generation, i.e. reward-model scoring and bookkeeping;
3. reward-model scoring images/s (``RewardModel.predict``, default features).

Peak memory is the RSS high-water mark (``VmHWM`` in /proc) of a fresh child
process per phase, minus the RSS after imports; on CUDA also
``torch.cuda.max_memory_allocated``. Figures go to stdout and
``bench/out/engine.json``.

    python bench/engine.py [--quick] [--threads N]
    python bench/engine.py --backend sd --model_path <SD folder> --device cuda \
        --resolution 512 --mixed_precision bf16
    python bench/engine.py --backend sd --tiny_sd --quick   # CPU smoke check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# tests.sd_random: the random Stable Diffusion folder the tests use too
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

OUT = ROOT / "bench" / "out"
PROMPTS = (
    ("Chest X-ray: frontal chest radiograph with clear lung fields", "Chest X-ray"),
    ("CT: axial CT slice of the abdomen at the level of the kidneys", "CT"),
    ("Brain MRI: axial T2-weighted brain MRI at the level of the ventricles", "MRI"),
    ("Fundus: colour fundus photograph centred on the macula", "Fundus"),
)


@dataclass
class Settings:
    backend: str
    model_path: str | None
    device: str
    resolution: int
    mixed_precision: str
    batch_size: int
    train_steps: int
    warmup_pairs: int
    gen_images: int
    gen_batch: int
    gen_steps: int
    gen_rounds: int
    guidance: float
    filter_requests: int
    filter_n: int
    reward_images: int
    memory_steps: int
    per_modality: int
    threads: int | None = None
    seed: int = 0


def settings_from_args(args: argparse.Namespace) -> Settings:
    quick = args.quick
    sd = args.backend == "sd"
    return Settings(
        backend=args.backend,
        model_path=args.model_path,
        device=args.device,
        resolution=args.resolution or 64,
        mixed_precision=args.mixed_precision,
        batch_size=args.batch_size or (4 if quick else 16),
        train_steps=args.train_steps or (4 if quick else 10),
        warmup_pairs=1 if quick else 2,
        gen_images=2 if quick else 8,
        gen_batch=2 if quick else 8,
        gen_steps=args.gen_steps or (5 if quick else 20),
        gen_rounds=2 if quick else 3,
        guidance=7.5 if sd else 3.0,
        filter_requests=1 if quick else 2,
        filter_n=4,
        reward_images=32 if quick else 256,
        memory_steps=2 if quick else 3,
        per_modality=4 if quick else 12,
        threads=args.threads,
    )


# --- measuring --------------------------------------------------------------


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over pairs of slow/fast time: robust to load changing mid-run."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def rate(count: int, seconds: list[float]) -> float:
    return count / statistics.median(seconds)


def log(message: str) -> None:
    print(
        f"[{time.strftime('%H:%M:%S')} load {loadavg()[0]:.1f}] {message}", flush=True
    )


# --- building the pieces ----------------------------------------------------


def build_data(folder: Path, s: Settings) -> Path:
    """Demo images as ``path,Text,modality``; PNG rows only, as training reads."""
    from models_ml.engine.demo import build_demo_dataset

    demo = build_demo_dataset(
        folder / "demo", per_modality=s.per_modality, size=max(64, s.resolution)
    ).csv_path
    lines = demo.read_text().splitlines()
    kept = [lines[0]] + [x for x in lines[1:] if x.split(",", 1)[0].endswith(".png")]
    csv_path = demo.with_name("train.csv")
    csv_path.write_text("\n".join(kept) + "\n")
    return csv_path


def train_config(s: Settings, data_csv: Path, output_dir: Path, steps: int) -> Any:
    from models_ml.engine.train_config import TrainConfig

    return TrainConfig(
        data_csv=str(data_csv),
        output_dir=str(output_dir),
        backend=s.backend,
        model_path=s.model_path,
        resolution=s.resolution,
        batch_size=s.batch_size,
        max_steps=steps,
        seed=s.seed,
        device=s.device,
        mixed_precision=s.mixed_precision,
    )


def plain_trainer(s: Settings, data_csv: Path, steps: int, *, use_lora: bool) -> Any:
    import torch
    from engine_plain import PlainSDTrainer, PlainTinyTrainer

    from models_ml.engine.backends.tiny import TinyConfig
    from models_ml.engine.data import load_training_set
    from models_ml.engine.train_config import TrainConfig

    defaults = TrainConfig(data_csv=str(data_csv))
    common = {
        "batch_size": s.batch_size,
        "max_steps": steps,
        "learning_rate": defaults.learning_rate,
        "weight_decay": defaults.weight_decay,
        "warmup_steps": defaults.lr_warmup_steps,
        "max_grad_norm": defaults.max_grad_norm,
        "seed": s.seed,
    }
    data = load_training_set(data_csv, s.resolution)
    if s.backend == "sd":
        assert s.model_path
        return PlainSDTrainer(
            model_path=s.model_path,
            data=data,
            device=torch.device(s.device),
            mixed_precision=s.mixed_precision,
            use_lora=use_lora,
            lora_rank=defaults.lora_rank,
            **common,
        )
    tiny = TinyConfig(
        resolution=s.resolution, channels=tuple(defaults.channels), seed=s.seed
    )
    return PlainTinyTrainer(
        tiny_config=tiny, data=data, cond_dropout=defaults.cond_dropout, **common
    )


def sd_dtype(s: Settings) -> Any:
    """Generation runs wholly in half precision on CUDA when asked, as diffusers
    pipelines usually do; float32 elsewhere."""
    import torch

    if s.device.startswith("cuda") and s.mixed_precision == "bf16":
        return torch.bfloat16
    if s.device.startswith("cuda") and s.mixed_precision == "fp16":
        return torch.float16
    return torch.float32


def load_engine_backend(s: Settings) -> Any:
    if s.backend == "sd":
        from models_ml.engine.backends import load_backend

        backend = load_backend(s.model_path or "", device=s.device)
        backend.set_resolution(s.resolution)
        for part in (backend.unet, backend.vae, backend.text_encoder):
            part.to(dtype=sd_dtype(s))
        return backend
    from models_ml.engine.backends.tiny import TinyConfig, create_tiny_backend

    return create_tiny_backend(
        TinyConfig(resolution=s.resolution, seed=s.seed), device=s.device
    )


def plain_sampler(s: Settings, backend: Any) -> Any:
    from engine_plain import PlainSDPipeline, PlainTinySampler

    if s.backend == "sd":
        import torch

        pipe = PlainSDPipeline(
            s.model_path or "", device=torch.device(s.device), dtype=sd_dtype(s)
        )

        def sd_generate(prompts: Any, modalities: Any, seeds: Any, **kw: Any) -> Any:
            return pipe.generate(
                prompts, modalities, seeds, resolution=s.resolution, **kw
            )

        return sd_generate
    return PlainTinySampler.like(backend).generate


def requests_for(count: int, offset: int = 0) -> list[Any]:
    from models_ml.engine.backends.base import GenerationRequest

    return [
        GenerationRequest(
            prompt=PROMPTS[i % len(PROMPTS)][0],
            modality=PROMPTS[i % len(PROMPTS)][1],
            seed=offset + i,
        )
        for i in range(count)
    ]


# --- 1. training ------------------------------------------------------------


def bench_training(
    s: Settings, data_csv: Path, work: Path, *, use_lora: bool = False
) -> dict[str, Any]:
    """Engine step k then plain step k, back to back, for every step."""
    from models_ml.engine.train import train
    from models_ml.engine.train_config import TrainProgress

    steps = s.train_steps
    plain = plain_trainer(s, data_csv, steps, use_lora=use_lora)
    ours_times: list[float] = []
    plain_times: list[float] = []
    last: list[float] = []

    def progress(_: TrainProgress) -> None:
        sync(s.device)
        now = time.perf_counter()
        if last:
            ours_times.append(now - last[-1])
        start = time.perf_counter()
        plain.step()
        sync(s.device)
        plain_times.append(time.perf_counter() - start)
        log(f"train step {len(plain_times)}/{steps}")
        last.append(time.perf_counter())

    config = train_config(s, data_csv, work / "train", steps)
    config.use_lora = use_lora
    load = loadavg()
    setup_start = time.perf_counter()
    train(config, progress=progress)
    total = time.perf_counter() - setup_start
    # ours_times[j] is engine step j + 2 (no callback precedes step 1) and
    # plain_times[j] plain step j + 1: drop the first w steps of each.
    w = max(1, s.warmup_pairs)
    ours = ours_times[w - 1 :]
    paired_plain = plain_times[w:]
    return {
        "batch_size": s.batch_size,
        "steps": steps,
        "timed_pairs": len(ours),
        "engine_samples_per_s": rate(s.batch_size, ours),
        "plain_samples_per_s": rate(s.batch_size, paired_plain),
        "speedup": median_ratio(paired_plain, ours),
        "engine_step_s": ours,
        "plain_step_s": paired_plain,
        "engine_run_incl_setup_s": total,
        "loadavg_start": load,
        "loadavg_end": loadavg(),
    }


# --- 2. generation and filtering --------------------------------------------


def bench_generation(s: Settings, backend: Any) -> dict[str, Any]:
    """Alternate engine batch and plain batch, ``gen_rounds`` times each."""
    sampler = plain_sampler(s, backend)
    ours_times: list[float] = []
    plain_times: list[float] = []
    load = loadavg()
    warm = requests_for(min(2, s.gen_batch))
    backend.generate(warm, steps=2, guidance=s.guidance, batch_size=s.gen_batch)
    sampler(
        [r.prompt for r in warm],
        [r.modality for r in warm],
        [0, 1][: len(warm)],
        steps=2,
        guidance=s.guidance,
    )
    for round_ in range(s.gen_rounds):
        requests = requests_for(s.gen_images, offset=round_ * 1000)
        sync(s.device)
        start = time.perf_counter()
        backend.generate(
            requests,
            steps=s.gen_steps,
            guidance=s.guidance,
            scheduler="ddim",
            batch_size=s.gen_batch,
        )
        sync(s.device)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(0, len(requests), s.gen_batch):
            chunk = requests[i : i + s.gen_batch]
            sampler(
                [r.prompt for r in chunk],
                [r.modality for r in chunk],
                [r.seed for r in chunk],
                steps=s.gen_steps,
                guidance=s.guidance,
            )
        sync(s.device)
        plain_times.append(time.perf_counter() - start)
        log(f"generation round {round_ + 1}/{s.gen_rounds}")
    return {
        "images_per_round": s.gen_images,
        "batch_size": s.gen_batch,
        "steps": s.gen_steps,
        "guidance": s.guidance,
        "scheduler": "ddim",
        "rounds": s.gen_rounds,
        "engine_images_per_s": rate(s.gen_images, ours_times),
        "plain_images_per_s": rate(s.gen_images, plain_times),
        "speedup": median_ratio(plain_times, ours_times),
        "engine_round_s": ours_times,
        "plain_round_s": plain_times,
        "loadavg_start": load,
        "loadavg_end": loadavg(),
    }


class _Timed:
    """Wraps a generator or scorer and adds up the seconds spent in it."""

    def __init__(self, inner: Any, method: str, device: str) -> None:
        self.inner = inner
        self.method = method
        self.device = device
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name != self.method:
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                sync(self.device)
                self.seconds += time.perf_counter() - start

        return timed


def demo_reward_model(data_csv: Path) -> Any:
    """A reward model trained in seconds on demo images: matching prompt = 3,
    another modality's prompt = 1, default (handcrafted) features."""
    import csv

    from models_ml.engine.reward import train_reward_model
    from models_ml.engine.reward_data import RatingRecord
    from models_ml.engine.reward_head import RewardConfig

    with data_csv.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["path"].endswith(".png")]
    records = []
    for i, row in enumerate(rows):
        path = str(data_csv.parent / row["path"])
        other = rows[(i + len(rows) // 2) % len(rows)]
        records.append(RatingRecord(path, row["Text"], row["modality"], 3))
        if other["modality"] != row["modality"]:
            records.append(RatingRecord(path, other["Text"], other["modality"], 1))
    config = RewardConfig(ensemble_size=3, epochs=60, n_folds=2)
    return train_reward_model(records, config=config).model


def bench_filtering(s: Settings, backend: Any, reward: Any) -> dict[str, Any]:
    """Best-of-N: share of filter_generate time that is not image generation."""
    from models_ml.engine.filtering import filter_generate

    generator = _Timed(backend, "generate", s.device)
    scorer = _Timed(reward, "predict", s.device)
    requests = requests_for(s.filter_requests, offset=5000)
    load = loadavg()
    start = time.perf_counter()
    result = filter_generate(
        generator,
        scorer,
        requests,
        mode="best_of_n",
        n=s.filter_n,
        steps=s.gen_steps,
        guidance=s.guidance,
        batch_size=s.gen_batch,
    )
    total = time.perf_counter() - start
    extra = total - generator.seconds
    return {
        "requests": len(requests),
        "n": s.filter_n,
        "images_generated": result.stats["n_generated"],
        "steps": s.gen_steps,
        "total_s": total,
        "generation_s": generator.seconds,
        "scoring_s": scorer.seconds,
        "overhead_fraction": extra / generator.seconds,
        "scoring_fraction": scorer.seconds / generator.seconds,
        "loadavg_start": load,
        "loadavg_end": loadavg(),
    }


# --- 3. reward scoring ------------------------------------------------------


def bench_reward(s: Settings, reward: Any, backend: Any) -> dict[str, Any]:
    """RewardModel.predict on generated-sized images (features included)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    size = backend.resolution
    images = [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        for _ in range(s.reward_images)
    ]
    prompts = [PROMPTS[i % len(PROMPTS)][0] for i in range(len(images))]
    modalities = [PROMPTS[i % len(PROMPTS)][1] for i in range(len(images))]
    reward.predict(images[:4], prompts[:4], modalities[:4])
    load = loadavg()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        reward.predict(images, prompts, modalities)
        times.append(time.perf_counter() - start)
    return {
        "images": len(images),
        "image_size": size,
        "features": reward.feature_extractor.config()["kind"],
        "images_per_s": rate(len(images), times),
        "runs_s": times,
        "loadavg_start": load,
        "loadavg_end": loadavg(),
    }


# --- peak memory, one child process per phase -------------------------------

PHASES = ("train-engine", "train-plain", "generate-engine", "generate-plain")


def run_phase(s: Settings, phase: str, data_csv: Path, work: Path) -> dict[str, Any]:
    """Body of a child process: import, note RSS, run one phase, report peaks."""
    set_threads(s)
    import diffusers  # noqa: F401
    import torch
    import transformers  # noqa: F401

    from models_ml.engine.train import train

    before = rss_kib("VmRSS")
    steps = s.memory_steps
    use_lora = s.backend == "sd" and "full" not in phase
    if phase.startswith("train-engine"):
        config = train_config(s, data_csv, work / "mem-train", steps)
        config.use_lora = use_lora
        train(config)
    elif phase.startswith("train-plain"):
        trainer = plain_trainer(s, data_csv, steps, use_lora=use_lora)
        for _ in range(steps):
            trainer.step()
    else:
        requests = requests_for(s.gen_batch)
        texts = [r.prompt for r in requests]
        modalities = [r.modality for r in requests]
        seeds = [r.seed for r in requests]
        kw = {"steps": s.memory_steps, "guidance": s.guidance}
        if phase == "generate-engine":
            load_engine_backend(s).generate(requests, batch_size=s.gen_batch, **kw)
        elif s.backend == "sd":
            plain_sampler(s, None)(texts, modalities, seeds, **kw)
        else:
            from engine_plain import PlainTinySampler

            from models_ml.engine.backends.tiny import TinyConfig

            tiny = TinyConfig(resolution=s.resolution, seed=s.seed)
            PlainTinySampler.fresh(tiny).generate(texts, modalities, seeds, **kw)
    out = {
        "phase": phase,
        "rss_after_imports_mib": before / 1024,
        "peak_rss_mib": rss_kib("VmHWM") / 1024,
        "peak_over_imports_mib": (rss_kib("VmHWM") - before) / 1024,
    }
    if s.device.startswith("cuda"):
        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def measure_memory(
    s: Settings, data_csv: Path, work: Path, phases: tuple[str, ...]
) -> dict[str, Any]:
    results = {}
    for phase in phases:
        log(f"memory: {phase} in a child process")
        command = [
            sys.executable,
            __file__,
            "--_phase",
            phase,
            "--_settings",
            json.dumps(asdict(s)),
            "--_data",
            str(data_csv),
            "--_work",
            str(work / phase),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
        if done.returncode or not lines:
            raise RuntimeError(f"memory phase {phase} failed:\n{done.stderr[-3000:]}")
        results[phase] = json.loads(lines[-1])
    return results


# --- the run ----------------------------------------------------------------


def make_tiny_sd(folder: Path) -> Path:
    """A random SD v1-layout folder small enough for a CPU smoke check."""
    from tests.sd_random import write_random_sd_folder

    return write_random_sd_folder(
        folder,
        text_width=32,
        text_layers=2,
        unet_channels=(16, 32),
        max_tokens=256,
        train_timesteps=1000,
    )


def set_threads(s: Settings) -> None:
    if s.threads:
        import torch

        torch.set_num_threads(s.threads)


def run(s: Settings, *, memory: bool, tiny_sd: bool) -> dict[str, Any]:
    import torch

    set_threads(s)

    report: dict[str, Any] = {
        "command": " ".join(["python", "bench/engine.py", *sys.argv[1:]]),
        "settings": asdict(s),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": s.device,
            "loadavg_start": loadavg(),
        },
    }
    if s.device.startswith("cuda"):
        report["machine"]["gpu"] = torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        work = Path(tmp)
        if tiny_sd:
            s.model_path = str(make_tiny_sd(work / "tiny-sd"))
            report["settings"]["model_path"] = "<tiny random SD folder>"
        log("building demo data")
        data_csv = build_data(work, s)
        if s.backend == "sd":
            for variant, lora in (("lora", True), ("full_unet", False)):
                log(f"training ({variant})")
                report[f"train_{variant}"] = bench_training(
                    s, data_csv, work / variant, use_lora=lora
                )
        else:
            log("training")
            report["train"] = bench_training(s, data_csv, work)
        if memory:
            phases = PHASES
            if s.backend == "sd":
                phases = (
                    "train-engine",
                    "train-plain",
                    "train-engine-full",
                    "train-plain-full",
                    "generate-engine",
                    "generate-plain",
                )
            report["memory"] = measure_memory(s, data_csv, work, phases)
        log("generation")
        backend = load_engine_backend(s)
        report["generate"] = bench_generation(s, backend)
        log("training a demo reward model")
        reward = demo_reward_model(data_csv)
        log("filtering")
        report["filter"] = bench_filtering(s, backend, reward)
        log("reward scoring")
        report["reward"] = bench_reward(s, reward, backend)
    report["machine"]["loadavg_end"] = loadavg()
    return report


def table(report: dict[str, Any]) -> str:
    rows = [("measure", "engine", "plain diffusers", "engine / plain")]
    for key in ("train", "train_lora", "train_full_unet"):
        if key in report:
            t = report[key]
            rows.append(
                (
                    f"{key} samples/s (batch {t['batch_size']})",
                    f"{t['engine_samples_per_s']:.2f}",
                    f"{t['plain_samples_per_s']:.2f}",
                    f"{t['speedup']:.2f}x",
                )
            )
    for phase, m in report.get("memory", {}).items():
        if phase.endswith("-plain") or "-plain-" in phase:
            continue
        plain = report["memory"].get(phase.replace("engine", "plain"))
        engine_mib = m["peak_over_imports_mib"]
        rows.append(
            (
                f"{phase} peak RSS over imports (MiB)",
                f"{engine_mib:.0f}",
                f"{plain['peak_over_imports_mib']:.0f}" if plain else "-",
                f"{engine_mib / plain['peak_over_imports_mib']:.2f}" if plain else "-",
            )
        )
    g = report["generate"]
    rows.append(
        (
            f"generate images/s ({g['steps']} steps, batch {g['batch_size']})",
            f"{g['engine_images_per_s']:.2f}",
            f"{g['plain_images_per_s']:.2f}",
            f"{g['speedup']:.2f}x",
        )
    )
    f = report["filter"]
    rows.append(
        (
            f"best-of-{f['n']} overhead over generation",
            f"{100 * f['overhead_fraction']:.1f} %",
            "",
            "target <= 10 %",
        )
    )
    r = report["reward"]
    rows.append(
        (
            f"reward scoring images/s ({r['features']})",
            f"{r['images_per_s']:.1f}",
            "",
            "",
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller, ~2 minutes")
    parser.add_argument("--backend", choices=("tiny", "sd"), default="tiny")
    parser.add_argument("--model_path", help="local diffusers SD folder (sd)")
    parser.add_argument(
        "--tiny_sd", action="store_true", help="sd: use a tiny random SD folder"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int)
    parser.add_argument(
        "--mixed_precision", choices=("no", "fp16", "bf16"), default="no"
    )
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--train_steps", type=int)
    parser.add_argument("--gen_steps", type=int)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads; 0 keeps torch's default (one per core). "
        "1 by default: on shared cores more threads spin at every barrier",
    )
    parser.add_argument("--no_memory", action="store_true", help="skip peak memory")
    parser.add_argument("--output", default=str(OUT / "engine.json"))
    parser.add_argument("--_phase", help=argparse.SUPPRESS)
    parser.add_argument("--_settings", help=argparse.SUPPRESS)
    parser.add_argument("--_data", help=argparse.SUPPRESS)
    parser.add_argument("--_work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._phase:
        s = Settings(**json.loads(args._settings))
        print(json.dumps(run_phase(s, args._phase, Path(args._data), Path(args._work))))
        return
    if args.backend == "sd" and not (args.model_path or args.tiny_sd):
        parser.error("--backend sd needs --model_path (or --tiny_sd for a smoke run)")
    s = settings_from_args(args)
    if args.tiny_sd and not args.resolution:
        s.resolution = 16
    report = run(s, memory=not args.no_memory, tiny_sd=args.tiny_sd)
    text = table(report)
    print(text)
    print(
        f"load average at start {report['machine']['loadavg_start']}, "
        f"at end {report['machine']['loadavg_end']}"
    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
