"""One full round of medrlhf, driven the way its users drive it.

    OMP_NUM_THREADS=1 .venv/bin/python docs/walkthrough/run.py

Everything happens in a throwaway folder (``MEDRLHF_VAR_DIR``, default a new
temporary directory): the embedded default (SQLite, kombu's filesystem broker)
with ``manage.py demo_setup`` and ``manage.py run_embedded`` (gunicorn plus two
real Celery worker processes). Then, over the REST API only:

1. the admin trains a base tiny diffusion model (``train_base`` job),
2. opens a round that generates (prompts sampled per modality, several images
   per prompt, real controls, three raters per image),
3. three "physicians" rate it: a PROGRAM rates in their place (see ``Judge``),
4. the admin starts one retraining run (reward model, reward-weighted
   fine-tune, new version, comparison round old vs new), which they rate too,
5. the admin asks the generate page for best-of-4 images.

Chromium (Debian's, through Playwright) takes the screenshots; the figures are
read back through the API (ratings export, model versions, jobs) and printed,
and written to ``figures.md`` and ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
]
MODALITIES = ("fundus", "chest_xray", "ct")
JOB_TIMEOUT_S = 1800
MAX_SHOT_BYTES = 200_000


@dataclass(frozen=True)
class Physician:
    """How one simulated physician departs from the judge's rating."""

    username: str
    expert_level: str
    # Probability that a rating moves one point away from the judge's ...
    noise: float
    # ... and, when it moves, the probability that it moves up (kinder).
    up: float


PHYSICIANS = (
    Physician("dr_alvarez", "expert", noise=0.10, up=0.5),
    Physician("dr_chen", "specialist", noise=0.20, up=0.5),
    Physician("dr_okafor", "trainee", noise=0.30, up=0.7),
)


def log(message: str) -> None:
    print(f"[walkthrough {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the program that rates in the physicians' place -------------------------


class Judge:
    """The engine's simulated rater plus per-physician noise.

    ``fit_simulated_rater`` (research/simulated_raters.py)
    is a logistic regression on handcrafted image features, fitted on 70 % of
    the demo's REAL images (every modality) at the model's resolution.
    It says 3 when it is at least 90 % sure the image shows the prompted
    modality and the image is as close to real images of that modality as
    held-out real images are, 2 when the prompted modality is merely the likely
    one, 1 otherwise. Each physician then moves that rating one point with
    their own probability (``Physician``), from their own seeded generator.
    """

    def __init__(self, demo_csv: Path, resolution: int, seed: int) -> None:
        from models_ml.engine.readers import normalize_modality
        from models_ml.engine.reward_data import read_real_csv
        from research.simulated_raters import fit_simulated_rater

        rows = []
        for path, text, modality in read_real_csv(demo_csv):
            # Every modality: the comparison round's real controls are drawn
            # from the whole dataset, not only the prompts' modalities.
            if path.lower().endswith(".png"):
                rows.append((path, text, normalize_modality(modality)))
        self.rater = fit_simulated_rater(rows, resolution=resolution, seed=seed)
        self.rngs = {
            p.username: np.random.default_rng([seed, i])
            for i, p in enumerate(PHYSICIANS)
        }

    def rate(self, physician: Physician, image: Image.Image, modality: str) -> int:
        judged = self.rater.rate([image.convert("RGB")], [modality])[0]
        rng = self.rngs[physician.username]
        if rng.random() < physician.noise:
            judged += 1 if rng.random() < physician.up else -1
        return int(min(3, max(1, judged)))


# --- the embedded product --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def product_env(var_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MEDIA_ROOT", "MODELS_DIR", "IMPORT_ROOTS")
    }
    env.update(
        MEDRLHF_VAR_DIR=str(var_dir),
        DATABASE_URL=f"sqlite:///{var_dir / 'medrlhf.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    log("manage.py " + " ".join(args))
    done = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def passwords_from(demo_output: str) -> dict[str, str]:
    """The one-time passwords demo_setup prints: '  role  username  password'."""
    found = {}
    for line in demo_output.splitlines():
        m = re.match(r"\s+(admin|physician|researcher)\s+(\S+)\s+(\S+)\s*$", line)
        if m:
            found[m.group(2)] = m.group(3)
    return found


class Product:
    """``manage.py run_embedded`` in its own process group."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "manage.py", "run_embedded", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"run_embedded exited early; see {self.log.name}")
            try:
                requests.get(f"{self.url}/accounts/login/", timeout=30)
                return
            except requests.RequestException:
                time.sleep(1)
        sys.exit(f"the web server did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            # run_embedded turns SIGTERM into a clean stop of its children.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Api:
    """One user's token session against the REST API."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url
        self.username = username
        self.http = requests.Session()
        token = self.post(
            "/api/auth/token/", {"username": username, "password": password}
        )["token"]
        self.http.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        for attempt in range(3):
            try:
                r = self.http.request(method, f"{self.url}{path}", timeout=120, **kw)
                break
            except requests.ConnectionError as exc:
                # A busy machine now and then drops a connection; say so, retry.
                log(f"  {method} {path}: {exc.__class__.__name__}; retrying")
                if attempt == 2:
                    raise
                time.sleep(2)
        if r.status_code >= 400:
            sys.exit(f"{self.username} {method} {path} -> {r.status_code}: {r.text}")
        return r

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw).json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("POST", path, json=body).json()

    def wait_job(self, job_id: int, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            job = self.get(f"/api/jobs/{job_id}/")
            shown = (job["status"], job["message"])
            if shown != last:
                log(f"  {what} (job {job_id}): {job['status']} {job['message']}")
                last = shown
            if job["is_finished"]:
                if job["status"] != "succeeded":
                    sys.exit(f"{what} ended {job['status']}: {job['error']}")
                return job
            time.sleep(2)
        sys.exit(f"{what} did not finish in {JOB_TIMEOUT_S} s")


def results_of(page: Any) -> list[Any]:
    return page["results"] if isinstance(page, dict) else page


# --- the walk-through ------------------------------------------------------------


def rate_round(
    url: str,
    physicians: dict[str, Api],
    judge: Judge,
    round_id: int,
) -> dict[str, int]:
    """Each physician asks for their next image until none is left."""
    counts = {}
    for p in PHYSICIANS:
        api = physicians[p.username]
        mine = [r for r in results_of(api.get("/api/rounds/")) if r["id"] == round_id]
        if not mine:
            sys.exit(f"{p.username} does not see round {round_id}")
        n = 0
        while True:
            served = api.call("GET", f"/api/rounds/{round_id}/next/")
            if served.status_code == 204:
                break
            item = served.json()
            image = item["image"]
            started = time.monotonic()
            picture = Image.open(io.BytesIO(api.call("GET", image["file_url"]).content))
            score = judge.rate(p, picture, image["modality"])
            api.post(
                "/api/ratings/",
                {
                    "round": round_id,
                    "image": image["uid"],
                    "score": score,
                    "time_taken_ms": int((time.monotonic() - started) * 1000),
                },
            )
            n += 1
        counts[p.username] = n
        log(f"  {p.username} rated {n} images of round {round_id}")
    return counts


def export_rows(admin: Api, round_id: int) -> list[dict[str, str]]:
    text = admin.call("GET", f"/api/export/ratings.csv?round={round_id}").text
    return list(csv.DictReader(io.StringIO(text)))


def share_3(ratings: list[int]) -> dict[str, Any]:
    from research.simulated_raters import wilson_interval

    n = len(ratings)
    threes = sum(1 for r in ratings if r == 3)
    low, high = wilson_interval(threes, n)
    return {
        "n": n,
        "rated_3": threes,
        "share_3": threes / n if n else None,
        "wilson95": [low, high],
        "mean": sum(ratings) / n if n else None,
        "counts": {str(v): ratings.count(v) for v in (1, 2, 3)},
    }


def by_version(rows: list[dict[str, str]]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        control = row["is_control"].lower() in ("true", "t", "1")
        name = "real controls" if control else row["model_version"]
        groups[name].append(int(row["rating"]))
    return dict(groups)


def image_file(api: Api, uid_hex: str) -> Image.Image:
    uid = uuid.UUID(hex=uid_hex)
    return Image.open(io.BytesIO(api.call("GET", f"/api/images/{uid}/file/").content))


def samples_grid(
    samples: list[tuple[str, str, Image.Image]], path: Path, cell: int = 48
) -> None:
    """One row per version, images grouped by modality, upscaled without smoothing."""
    from PIL import ImageDraw

    rows: dict[str, list[tuple[str, Image.Image]]] = defaultdict(list)
    for version, modality, image in sorted(samples, key=lambda s: (s[0], s[1])):
        rows[version].append((modality, image))
    label = 150
    width = label + cell * max(len(r) for r in rows.values())
    canvas = Image.new("RGB", (width, 14 + cell * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    first = next(iter(rows.values()))
    for k, (modality, _) in enumerate(first):
        if k == 0 or first[k - 1][0] != modality:
            draw.text((label + k * cell + 2, 1), modality, fill="black")
    for r, (version, images) in enumerate(rows.items()):
        y = 14 + r * cell
        draw.text((2, y + cell // 2 - 6), version, fill="black")
        for k, (_, image) in enumerate(images):
            small = image.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(small, (label + k * cell, y))
    canvas.save(path, optimize=True)
    log(f"  samples {path} ({path.stat().st_size // 1024} KB)")


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def screenshot(page: Any, path: Path, *, full_page: bool = False) -> None:
    """A PNG; a palette one when the full-colour file would be over 200 KB."""
    page.screenshot(path=str(path), full_page=full_page)
    if path.stat().st_size > MAX_SHOT_BYTES:
        with Image.open(path) as shot:
            small = shot.convert("RGB").quantize(colors=128, method=2)
        small.save(path, optimize=True)
    log(f"  screenshot {path} ({path.stat().st_size // 1024} KB)")


class Browser:
    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )

    def login(self, url: str, username: str, password: str) -> Any:
        context = self.browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{url}/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")
        return page

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--var-dir", type=Path, help="default: a new temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the var dir")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "walkthrough")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--per-modality", type=int, default=30, help="demo images")
    parser.add_argument("--base-steps", type=int, default=200)
    parser.add_argument("--finetune-steps", type=int, default=80)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--prompts-per-modality", type=int, default=2)
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.monotonic()
    var_dir = args.var_dir or Path(tempfile.mkdtemp(prefix="medrlhf-walkthrough-"))
    var_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    args.images.mkdir(parents=True, exist_ok=True)
    env = product_env(var_dir)
    log(f"MEDRLHF_VAR_DIR={var_dir}")
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        timings[name] = round(time.monotonic() - since, 1)
        return time.monotonic()

    t = time.monotonic()
    manage(env, "migrate", "--noinput", "-v0")
    demo = manage(env, "demo_setup", "--per-modality", str(args.per_modality))
    passwords = passwords_from(demo)
    for line in demo.splitlines():
        if not re.match(r"\s+(admin|physician|researcher)\s", line):
            log(f"  {line.strip()}")
    t = lap("demo_setup", t)

    product = Product(env, free_port(), var_dir / "run_embedded.log")
    browser = None
    try:
        product.wait_ready()
        t = lap("start_servers", t)
        url = product.url
        admin = Api(url, "admin", passwords["admin"])
        physicians = {
            p.username: Api(url, p.username, passwords[p.username]) for p in PHYSICIANS
        }
        judge = Judge(var_dir / "demo" / "metadata.csv", args.resolution, args.seed)
        log(
            f"judge: held-out accuracy {judge.rater.heldout_accuracy:.3f} on "
            f"{judge.rater.n_heldout} real images; held-out real rated 3: "
            f"{judge.rater.heldout_real_share_3:.3f}"
        )
        t = lap("judge_fit", t)

        # 1. The base model, trained by the product's train_base job.
        dataset = results_of(admin.get("/api/datasets/"))[0]
        queued = admin.post(
            f"/api/datasets/{dataset['id']}/train-base/",
            {
                "params": {
                    "name": "tiny base",
                    "resolution": args.resolution,
                    "channels": [32, 64],
                    "max_steps": args.base_steps,
                    "batch_size": 16,
                    "learning_rate": 1e-3,
                    "lr_warmup_steps": 0,
                    "seed": args.seed,
                }
            },
        )
        job = admin.wait_job(queued["job"], "train_base")
        base_id = job["result"]["model_version_id"]
        t = lap("train_base", t)

        # 2. A round that generates: prompts per modality, real controls.
        # The product's default sampler (ancestral DDPM, unguided).
        sampling = {"steps": args.sample_steps}
        queued = admin.post(
            "/api/rounds/generate/",
            {
                "name": "Round 1: tiny base",
                "model_version": base_id,
                "sample_from_dataset": {
                    "dataset": dataset["id"],
                    "per_modality": args.prompts_per_modality,
                    "modalities": list(MODALITIES),
                },
                "images_per_prompt": args.images_per_prompt,
                "raters_per_image": 3,
                "control_share": 0.2,
                "seed": args.seed,
                "sampling": sampling,
            },
        )
        round1 = queued["round"]
        admin.wait_job(queued["job"], "generate_round")
        t = lap("generate_round_1", t)

        # The physician's rating page, before dr_alvarez starts.
        browser = Browser()
        doctor = browser.login(url, "dr_alvarez", passwords["dr_alvarez"])
        doctor.goto(f"{url}/rate/{round1}/")
        doctor.wait_for_load_state("networkidle")
        screenshot(doctor, args.images / "walkthrough-rate.png")

        # 3. Three physicians rate it (the judge in their place).
        rated1 = rate_round(url, physicians, judge, round1)
        t = lap("rate_round_1", t)

        # 4. One retraining run: reward model, fine-tune, comparison round.
        queued = admin.post(
            "/api/retraining/",
            {
                "diffusion_version": base_id,
                "open_next_round": True,
                "reward": {
                    "ensemble_size": 3,
                    "epochs": 150,
                    "max_real_images": 120,
                    "seed": args.seed,
                },
                "finetune": {
                    "max_steps": args.finetune_steps,
                    "learning_rate": 1e-4,
                    "lr_warmup_steps": 10,
                    "lr_scheduler": "constant",
                    "beta": 3.0,
                    "batch_size": 16,
                    "seed": args.seed,
                },
                "round": {
                    "name": "Round 2: fine-tuned vs base",
                    "images_per_prompt": args.images_per_prompt,
                    "raters_per_image": 3,
                    "control_share": 0.2,
                    # New seeds: the comparison is not on the images trained on.
                    "seed": args.seed + 1,
                    **sampling,
                },
            },
        )
        chain = queued["chain"]
        first_job = queued["job"]
        steps: list[dict[str, Any]] = []
        deadline = time.monotonic() + JOB_TIMEOUT_S
        seen = None
        while time.monotonic() < deadline:
            run = admin.get(f"/api/retraining/{chain}/")
            shown = [(j["kind"], j["status"], j["message"]) for j in run["jobs"]]
            if shown != seen:
                current = run["jobs"][-1]
                log(
                    f"  retraining: {current['kind']} {current['status']} "
                    f"{current['message']}"
                )
                seen = shown
            if run["status"] in ("succeeded", "failed", "cancelled"):
                steps = run["jobs"]
                break
            time.sleep(2)
        if not steps or run["status"] != "succeeded":
            sys.exit(f"retraining ended {run['status']}: {run['jobs'][-1]['error']}")
        t = lap("retraining", t)
        # By step: the run fine-tunes twice (the new version, then its control).
        kinds = {j["params"]["chain"]["step"]: j for j in steps}
        reward_id = kinds["train_reward"]["result"]["model_version_id"]
        tuned_id = kinds["finetune"]["result"]["model_version_id"]
        control_id = kinds["control"]["result"]["model_version_id"]
        round2 = kinds["generate_round"]["result"]["round_id"]

        rated2 = rate_round(url, physicians, judge, round2)
        t = lap("rate_round_2", t)
        # Closing the comparison round records the promotion gate's verdict.
        admin.post(f"/api/rounds/{round2}/close/", {})
        (comparison,) = [
            c for c in admin.get("/api/comparisons/") if c["round"] == round2
        ]
        log(f"  gate: {comparison['verdict']['reason']}")

        # 5. The generate page: best of 4 by the reward model.
        queued = admin.post(
            "/api/generate/",
            {
                "model_version": tuned_id,
                "reward_version": reward_id,
                "prompt": kinds["generate_round"]["params"]["prompts"][0][0],
                "modality": kinds["generate_round"]["params"]["prompts"][0][1],
                "count": 4,
                "mode": "best_of_n",
                "n": 4,
                "seed": args.seed,
                "sampling": sampling,
            },
        )
        generate_job = queued["job"]
        admin.wait_job(generate_job, "generate")
        t = lap("generate_best_of_4", t)

        # Screenshots of the admin's pages.
        page = browser.login(url, "admin", passwords["admin"])
        for name, path, full in (
            ("rounds", "/manage/rounds/", False),
            ("retraining", f"/models/jobs/{first_job}/", False),
            ("lineage", "/models/lineage/", False),
            ("dashboard", "/models/dashboard/", True),
            ("generate", f"/generate/{generate_job}/", False),
        ):
            page.goto(f"{url}{path}")
            page.wait_for_load_state("networkidle")
            screenshot(page, args.images / f"walkthrough-{name}.png", full_page=full)
        t = lap("screenshots", t)

        # Figures, read back through the API.
        rows1, rows2 = export_rows(admin, round1), export_rows(admin, round2)
        samples = [
            (row["model_version"], row["modality"], image_file(admin, row["image_uid"]))
            for row in {r["image_uid"]: r for r in rows2}.values()
            if row["image_source"] == "generated"
        ]
        samples_grid(samples, args.images / "walkthrough-samples.png")
        versions = {
            v["id"]: admin.get(f"/api/model-versions/{v['id']}/")
            for v in admin.get("/api/model-versions/")
        }
        jobs = results_of(admin.get("/api/jobs/?limit=200"))
        results = {
            "settings": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            },
            "judge": {
                "heldout_accuracy": judge.rater.heldout_accuracy,
                "n_heldout": judge.rater.n_heldout,
                "heldout_real_share_3": judge.rater.heldout_real_share_3,
                "physicians": [vars(p) for p in PHYSICIANS],
            },
            "rounds": {
                "round_1": {"id": round1, "ratings_per_physician": rated1},
                "round_2": {"id": round2, "ratings_per_physician": rated2},
            },
            "gate": {
                "candidate": tuned_id,
                "control": control_id,
                "verdict": comparison["verdict"],
            },
            "round_1": {k: share_3(v) for k, v in by_version(rows1).items()},
            "round_2": {k: share_3(v) for k, v in by_version(rows2).items()},
            "per_physician_round_2": {
                p.username: {
                    k: share_3(v)
                    for k, v in by_version(
                        [r for r in rows2 if r["rater"] == p.username]
                    ).items()
                }
                for p in PHYSICIANS
            },
            "versions": {
                v["name"]: {
                    "kind": v["kind"],
                    "parent": (v["parent"] or {}).get("name"),
                    "rating_count": v["rating_count"],
                    "metrics": {
                        k: m
                        for k, m in v["metrics"].items()
                        if not isinstance(m, (list, dict))
                    },
                }
                for v in versions.values()
            },
            "jobs": [
                {
                    "id": j["id"],
                    "kind": j["kind"],
                    "status": j["status"],
                    "waited_s": seconds_between(j["created_at"], j["started_at"]),
                    "ran_s": seconds_between(j["started_at"], j["finished_at"]),
                }
                for j in sorted(jobs, key=lambda j: j["id"])
            ],
            "script_seconds": {**timings},
        }
    finally:
        if browser is not None:
            browser.close()
        product.stop()
    results["script_seconds"]["total"] = round(time.monotonic() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    figures = figures_markdown(results)
    (args.out / "figures.md").write_text(figures)
    print(figures)
    if args.keep or args.var_dir:
        log(f"kept {var_dir}")
    else:
        shutil.rmtree(var_dir, ignore_errors=True)
    return results


def _share_row(name: str, s: dict[str, Any]) -> str:
    low, high = s["wilson95"]
    c = s["counts"]
    return (
        f"| {name} | {s['n']} | {c['1']} / {c['2']} / {c['3']} | {s['mean']:.2f} | "
        f"{s['share_3']:.3f} | [{low:.3f}, {high:.3f}] |"
    )


def figures_markdown(results: dict[str, Any]) -> str:
    head = [
        "| images | ratings | 1 / 2 / 3 | mean | share 3 | Wilson 95 % |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines = ["### Ratings per version", ""]
    for key, title in (("round_1", "Round 1"), ("round_2", "Round 2 (comparison)")):
        lines += [f"{title}:", "", *head]
        lines += [_share_row(k, v) for k, v in sorted(results[key].items())]
        lines.append("")
    lines += ["Round 2 per physician (share rated 3):", ""]
    for name, groups in results["per_physician_round_2"].items():
        parts = [
            f"{k} {v['share_3']:.2f} (n={v['n']})" for k, v in sorted(groups.items())
        ]
        lines.append(f"- {name}: " + ", ".join(parts))
    lines += ["", "### Reward model (held out by prompt)", ""]
    wanted = (
        "n_ratings",
        "spearman",
        "kappa_quadratic",
        "auc_rated_3",
        "accuracy",
        "ece",
        "threshold",
    )
    for name, v in results["versions"].items():
        if v["kind"] != "reward":
            continue
        shown = [
            f"{k} {v['metrics'][k]:.3f}"
            if isinstance(v["metrics"].get(k), float)
            else f"{k} {v['metrics'].get(k)}"
            for k in wanted
            if k in v["metrics"]
        ]
        lines.append(f"- {name}: " + ", ".join(shown))
    lines += ["", "### Diffusion versions", ""]
    for name, v in results["versions"].items():
        if v["kind"] != "diffusion":
            continue
        m = v["metrics"]
        loss = m.get("final_loss")
        lines.append(
            f"- {name} (parent: {v['parent'] or 'none'}): {m.get('steps')} steps, "
            f"final loss {loss:.4f}, {v['rating_count']} ratings used"
            if loss is not None
            else f"- {name}"
        )
    lines += ["", "### Job times", "", "| job | kind | waited s | ran s |"]
    lines.append("| --- | --- | --- | --- |")
    for j in results["jobs"]:
        waited = "" if j["waited_s"] is None else f"{j['waited_s']:.1f}"
        ran = "" if j["ran_s"] is None else f"{j['ran_s']:.1f}"
        lines.append(f"| {j['id']} | {j['kind']} | {waited} | {ran} |")
    lines += ["", "### Script steps (wall seconds)", ""]
    lines.append(
        ", ".join(f"{k} {v:.0f}" for k, v in results["script_seconds"].items())
    )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
