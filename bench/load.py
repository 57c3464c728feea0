"""Load benchmark: 50 physicians fetching and rating images against gunicorn.

Seeds PostgreSQL with 100,000 images in one round and 200,000 existing ratings
(reused when already there), starts gunicorn on 127.0.0.1, runs concurrent
raters that each loop "GET next image, POST its rating" for a fixed time, then
checks the database for duplicate or surplus ratings.

    python bench/load.py [--raters 50] [--seconds 60] [--think-ms 0]

Figures go to stdout and ``bench/out/load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402
from benchdb import log  # noqa: E402

DB_NAME = "medrlhf_bench"
ROUND_NAME = "bench-load"
N_IMAGES = 100_000
N_RATINGS = 200_000
RATERS_PER_IMAGE = 3
RATER_PREFIX = "bench_rater_"
MAX_PAIRS_PER_RATER = 100_000
SEEDED_TABLES = (
    "annotations_image",
    "annotations_roundimage",
    "annotations_assignment",
    "annotations_rating",
)


def seed_counts() -> list[int]:
    """Half the images already have all 3 raters, half have 1: 200,000 ratings."""
    return [RATERS_PER_IMAGE if i % 2 else 1 for i in range(1, N_IMAGES + 1)]


def _seed_round_id() -> int | None:
    from annotations.models import Round

    rnd = Round.objects.filter(name=ROUND_NAME).first()
    return rnd.pk if rnd is not None else None


def seed_reset(round_id: int) -> None:
    """Remove what earlier runs added, so every run starts from the same seed."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "DELETE FROM annotations_rating WHERE round_id = %s AND id > %s",
            [round_id, N_RATINGS],
        )
        cur.execute(
            "DELETE FROM annotations_assignment WHERE round_id = %s AND id > %s",
            [round_id, N_RATINGS],
        )
        # The audit log is append-only (migration 0008): the bench's own
        # database steps the guard aside, as the test suite's flush does.
        cur.execute(
            "INSERT INTO annotations_audit_unlock (reason) VALUES (%s)",
            ["bench seed reset"],
        )
        cur.execute("DELETE FROM annotations_auditevent")
        cur.execute("DELETE FROM annotations_audit_unlock")
        cur.execute(
            """
            UPDATE annotations_roundimage ri
               SET assigned_count = c.n, rating_count = c.n
              FROM (SELECT ri2.id, COUNT(a.id) AS n
                      FROM annotations_roundimage ri2
                      LEFT JOIN annotations_assignment a ON a.round_image_id = ri2.id
                     WHERE ri2.round_id = %s
                     GROUP BY ri2.id) c
             WHERE ri.id = c.id
               AND (ri.assigned_count <> c.n OR ri.rating_count <> c.n)
            """,
            [round_id],
        )


def seed_consistent(round_id: int) -> bool:
    q = benchdb.scalar
    checks = {
        "images": (q("SELECT COUNT(*) FROM annotations_image"), N_IMAGES),
        "round items": (
            q(
                "SELECT COUNT(*) FROM annotations_roundimage WHERE round_id = %s",
                [round_id],
            ),
            N_IMAGES,
        ),
        "assignments": (
            q(
                "SELECT COUNT(*) FROM annotations_assignment "
                "WHERE round_id = %s AND completed_at IS NOT NULL",
                [round_id],
            ),
            N_RATINGS,
        ),
        "ratings": (
            q(
                "SELECT COUNT(*) FROM annotations_rating "
                "WHERE round_id = %s AND retracted_at IS NULL",
                [round_id],
            ),
            N_RATINGS,
        ),
        "rating_count sum": (
            q(
                "SELECT COALESCE(SUM(rating_count), 0) FROM annotations_roundimage "
                "WHERE round_id = %s",
                [round_id],
            ),
            N_RATINGS,
        ),
        "assigned_count sum": (
            q(
                "SELECT COALESCE(SUM(assigned_count), 0) FROM annotations_roundimage "
                "WHERE round_id = %s",
                [round_id],
            ),
            N_RATINGS,
        ),
    }
    bad = {k: v for k, v in checks.items() if v[0] != v[1]}
    for name, (got, want) in bad.items():
        log(f"seed check: {name} is {got}, expected {want}")
    return not bad


def seed(url: str) -> tuple[int, benchdb.Raters, float]:
    """The seeded round id, the raters, and the seconds seeding took."""
    t0 = time.perf_counter()
    benchdb.database_create(url)
    benchdb.django_setup(url)
    benchdb.migrate()
    round_id = _seed_round_id()
    if round_id is not None:
        seed_reset(round_id)
        if seed_consistent(round_id):
            raters = benchdb.raters_ensure(prefix=RATER_PREFIX, n=50)
            benchdb.analyze()
            log(f"reusing the seed in round {round_id}")
            return round_id, raters, time.perf_counter() - t0
        from django.db import connections

        connections.close_all()
        benchdb.database_create(url, drop=True)
        benchdb.database_create(url)
        benchdb.migrate()
    elif benchdb.scalar("SELECT COUNT(*) FROM annotations_image"):
        from django.db import connections

        connections.close_all()
        benchdb.database_create(url, drop=True)
        benchdb.database_create(url)
        benchdb.migrate()
    from django.db import transaction

    rng = random.Random(20240601)
    log(f"seeding {N_IMAGES:,} images and {N_RATINGS:,} ratings ...")
    with transaction.atomic():
        raters = benchdb.raters_ensure(prefix=RATER_PREFIX, n=50)
        benchdb.triggers_off_for_transaction()
        round_id = benchdb.round_create(
            name=ROUND_NAME,
            raters_per_image=RATERS_PER_IMAGE,
            settings={"bench_seed": {"images": N_IMAGES, "ratings": N_RATINGS}},
        )
        benchdb.images_seed(N_IMAGES, rng=rng)
        rated = benchdb.RatedSeed(
            round_id=round_id, n_images=N_IMAGES, rater_ids=raters.ids, stride=17
        )
        benchdb.round_items_seed(seed=rated, counts=seed_counts(), rng=rng)
        benchdb.sequences_reset(*SEEDED_TABLES)
        for table in SEEDED_TABLES:
            benchdb.foreign_keys_check(table)
    benchdb.analyze()
    if not seed_consistent(round_id):
        raise SystemExit("the fresh seed is inconsistent; see the lines above")
    took = time.perf_counter() - t0
    log(f"seeded in {took:.1f} s")
    return round_id, raters, took


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Gunicorn's own view of each request: method, path, status, milliseconds.
ACCESS_LOG_FORMAT = "%(m)s %(U)s %(s)s %(M)s"


def cache_url(choice: str) -> str:
    """The server's cache: shared Redis as deployed (emptied first, since the
    seed was just reset under it), or each process's own memory."""
    if choice == "locmem":
        return "locmemcache://"
    url = os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/14")
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


def gunicorn_start(
    url: str,
    *,
    port: int,
    workers: int,
    threads: int,
    access_log: Path,
    cache: str,
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "medrlhf.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--chdir",
        str(benchdb.REPO_ROOT),
        "--log-level",
        "warning",
        "--timeout",
        "60",
        # Gunicorn's 2 s default closes a rater's idle connection while they
        # look at an image; the client then races the close and sees a reset.
        "--keep-alive",
        "30",
        "--access-logfile",
        str(access_log),
        "--access-logformat",
        ACCESS_LOG_FORMAT,
    ]
    log("gunicorn: " + " ".join(cmd[3:]))
    env = benchdb.server_env(url) | {"CACHE_URL": cache}
    return subprocess.Popen(cmd, env=env, cwd=benchdb.REPO_ROOT)


def gunicorn_wait(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Wait until gunicorn accepts connections; the warm-up loads the app."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer on port {port} in {timeout:.0f} s")


def gunicorn_stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _tree_cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (gunicorn and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclass
class Stats:
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    pair_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    created: int = 0
    not_created: int = 0
    exhausted: int = 0


def server_latencies(access_log: Path, offset: int) -> dict[str, list[float]]:
    """Server-side milliseconds per request kind, from ``offset`` of the log on.

    The client's figures add its own event-loop delays on the same 2 cores;
    these are the time gunicorn spent on each request.
    """
    out: dict[str, list[float]] = {"next": [], "submit": []}
    with access_log.open("rb") as f:
        f.seek(offset)
        for line in f.read().decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) != 4 or not parts[3].isdigit():
                continue
            method, path, _status, ms = parts
            if method == "GET" and path.endswith("/next/"):
                out["next"].append(float(ms))
            elif method == "POST" and path == "/api/ratings/":
                out["submit"].append(float(ms))
    return out


def _image_uid(body: dict[str, Any]) -> str:
    """The served image's uid, whichever shape the next-image answer has."""
    image = body.get("image", body)
    if isinstance(image, dict):
        return str(image.get("uid") or image["id"])
    return str(image)


async def rater_loop(
    client: Any,
    *,
    round_id: int,
    token: str,
    measure_from: float,
    deadline: float,
    think_ms: float,
    rng: random.Random,
    warm: Stats,
    measured: Stats,
    max_pairs: int,
) -> None:
    """Loop "next, pause, submit" until ``deadline``; a pair whose "next"
    starts at or after ``measure_from`` counts in ``measured``, earlier ones
    in ``warm``.  One loop runs through both, so measuring starts in the
    steady state, not with every rater asking at the same instant."""
    headers = {"Authorization": f"Token {token}"}
    for _ in range(max_pairs):
        if time.monotonic() >= deadline:
            return
        record = time.monotonic() >= measure_from
        stats = measured if record else warm
        t0 = time.perf_counter()
        try:
            r = await client.get(f"/api/rounds/{round_id}/next/", headers=headers)
        except Exception as exc:  # noqa: BLE001 - any transport failure counts
            stats.errors[f"next {type(exc).__name__}"] += 1
            continue
        t1 = time.perf_counter()
        if r.status_code == 204 or (r.status_code == 200 and not r.content):
            stats.exhausted += 1
            return
        if r.status_code != 200:
            stats.errors[f"next {r.status_code}"] += 1
            continue
        uid = _image_uid(r.json())
        if record:
            stats.next_ms.append((t1 - t0) * 1000)
        if think_ms:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)
        body = {
            "round": round_id,
            "image": uid,
            "score": rng.randint(1, 3),
            "flags": ["artifact"] if rng.random() < 0.1 else [],
            "comment": "" if rng.random() < 0.8 else "bench comment",
            "time_taken_ms": rng.randint(1500, 20000),
        }
        t2 = time.perf_counter()
        try:
            r = await client.post("/api/ratings/", json=body, headers=headers)
        except Exception as exc:  # noqa: BLE001
            stats.errors[f"submit {type(exc).__name__}"] += 1
            continue
        t3 = time.perf_counter()
        if r.status_code not in (200, 201):
            stats.errors[f"submit {r.status_code}"] += 1
            continue
        if r.status_code == 201:
            stats.created += 1
        else:
            stats.not_created += 1
        if record:
            stats.submit_ms.append((t3 - t2) * 1000)
            stats.pair_ms.append((t1 - t0 + t3 - t2) * 1000)


async def drive(
    *,
    port: int,
    round_id: int,
    tokens: list[str],
    seconds: float,
    warmup: float,
    think_ms: float,
    on_measure: Any = None,
) -> tuple[Stats, float]:
    import httpx

    limits = httpx.Limits(
        max_connections=len(tokens), max_keepalive_connections=len(tokens)
    )
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30.0
    ) as client:
        warm, stats = Stats(), Stats()
        measure_from = time.monotonic() + warmup
        deadline = measure_from + seconds
        started: dict[str, float] = {}

        async def mark() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
            started["t0"] = time.perf_counter()
            if on_measure is not None:
                on_measure()

        marker = asyncio.create_task(mark())
        await asyncio.gather(
            *(
                rater_loop(
                    client,
                    round_id=round_id,
                    token=t,
                    measure_from=measure_from,
                    deadline=deadline,
                    think_ms=think_ms,
                    rng=random.Random(1000 + i),
                    warm=warm,
                    measured=stats,
                    max_pairs=MAX_PAIRS_PER_RATER,
                )
                for i, t in enumerate(tokens)
            )
        )
        await marker
        if warm.errors:
            log(f"warm-up errors: {dict(warm.errors)}")
        t0 = started["t0"]
        return stats, time.perf_counter() - t0


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 1),
        "p50": round(qs[49], 1),
        "p95": round(qs[94], 1),
        "p99": round(qs[98], 1),
        "max": round(max(values), 1),
    }


def db_checks(round_id: int) -> dict[str, int]:
    """Integrity after the run: duplicates, surplus ratings, counter drift."""
    q = benchdb.scalar
    return {
        "duplicate_live_ratings": q(
            """SELECT COUNT(*) FROM (
                 SELECT 1 FROM annotations_rating WHERE retracted_at IS NULL
                 GROUP BY rater_id, image_id, round_id HAVING COUNT(*) > 1) d"""
        ),
        "images_over_raters_per_image": q(
            """SELECT COUNT(*) FROM (
                 SELECT r.image_id FROM annotations_rating r
                  JOIN annotations_round o ON o.id = r.round_id
                 WHERE r.round_id = %s AND r.retracted_at IS NULL
                 GROUP BY r.image_id, o.raters_per_image
                HAVING COUNT(*) > o.raters_per_image) s""",
            [round_id],
        ),
        "rating_count_drift": q(
            """SELECT COUNT(*) FROM annotations_roundimage ri
                WHERE ri.round_id = %s AND ri.rating_count <> (
                  SELECT COUNT(*) FROM annotations_rating r
                   WHERE r.round_id = ri.round_id AND r.image_id = ri.image_id
                     AND r.retracted_at IS NULL)
                  AND ri.id IN (SELECT round_image_id FROM annotations_assignment
                                 WHERE round_id = %s AND id > %s)""",
            [round_id, round_id, N_RATINGS],
        ),
        "assigned_count_drift": q(
            """SELECT COUNT(*) FROM annotations_roundimage ri
                WHERE ri.round_id = %s AND ri.assigned_count <> (
                  SELECT COUNT(*) FROM annotations_assignment a
                   WHERE a.round_image_id = ri.id AND a.skipped_at IS NULL
                     AND a.expired_at IS NULL)
                  AND ri.id IN (SELECT round_image_id FROM annotations_assignment
                                 WHERE round_id = %s AND id > %s)""",
            [round_id, round_id, N_RATINGS],
        ),
        "new_ratings": q(
            "SELECT COUNT(*) FROM annotations_rating WHERE round_id = %s AND id > %s",
            [round_id, N_RATINGS],
        ),
        "new_assignments": q(
            "SELECT COUNT(*) FROM annotations_assignment "
            "WHERE round_id = %s AND id > %s",
            [round_id, N_RATINGS],
        ),
        "open_assignments": q(
            "SELECT COUNT(*) FROM annotations_assignment WHERE round_id = %s "
            "AND completed_at IS NULL AND skipped_at IS NULL AND expired_at IS NULL",
            [round_id],
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause between seeing an image and rating it (0: back to back)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--cache",
        choices=("redis", "locmem"),
        default="redis",
        help="the server's cache: shared Redis, as deployed (BENCH_CACHE_URL, "
        "default redis://127.0.0.1:6379/14, emptied first), or per process",
    )
    parser.add_argument("--json", default="load.json", help="file under bench/out/")
    args = parser.parse_args()
    if not 1 <= args.raters <= 50:
        parser.error("--raters must be 1 to 50 (50 accounts are seeded)")
    if not 1 <= args.seconds <= 600:
        parser.error("--seconds must be 1 to 600")

    url = benchdb.database_url(DB_NAME)
    info = benchdb.machine()
    log(f"machine: {info}")
    round_id, raters, seed_s = seed(url)
    from django.db import connections

    connections.close_all()

    port = free_port()
    log(
        f"gunicorn workers={args.workers} threads={args.threads} (gthread) "
        f"on 127.0.0.1:{port}; {args.raters} raters for {args.seconds:.0f} s, "
        f"think {args.think_ms:.0f} ms, cache {args.cache}"
    )
    access_log = benchdb.VAR_DIR / "bench-load-access.log"
    access_log.parent.mkdir(parents=True, exist_ok=True)
    access_log.write_bytes(b"")
    proc = gunicorn_start(
        url,
        port=port,
        workers=args.workers,
        threads=args.threads,
        access_log=access_log,
        cache=cache_url(args.cache),
    )
    mark = {"offset": 0}

    def on_measure() -> None:
        mark["offset"] = access_log.stat().st_size

    try:
        gunicorn_wait(proc, port, timeout=60)
        cpu0 = _tree_cpu_seconds(proc.pid)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        stats, wall = asyncio.run(
            drive(
                port=port,
                round_id=round_id,
                tokens=raters.tokens[: args.raters],
                seconds=args.seconds,
                warmup=args.warmup,
                think_ms=args.think_ms,
                on_measure=on_measure,
            )
        )
        server_cpu = _tree_cpu_seconds(proc.pid) - cpu0
        self1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        gunicorn_stop(proc)
    server_ms = server_latencies(access_log, mark["offset"])
    client_cpu = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)

    checks = db_checks(round_id)
    n_requests = len(stats.next_ms) + len(stats.submit_ms) + sum(stats.errors.values())
    result = {
        "machine": info,
        "config": {
            "raters": args.raters,
            "seconds": args.seconds,
            "think_ms": args.think_ms,
            "gunicorn_workers": args.workers,
            "gunicorn_threads": args.threads,
            "cache": args.cache,
            "images": N_IMAGES,
            "seed_ratings": N_RATINGS,
            "raters_per_image": RATERS_PER_IMAGE,
        },
        "seed_seconds": round(seed_s, 1),
        "wall_seconds": round(wall, 2),
        "requests": n_requests,
        "requests_per_s": round(n_requests / wall, 1),
        "pairs_per_s": round(len(stats.pair_ms) / wall, 1),
        "latency_ms": {
            "next": percentiles(stats.next_ms),
            "submit": percentiles(stats.submit_ms),
            "pair": percentiles(stats.pair_ms),
        },
        "server_latency_ms": {k: percentiles(v) for k, v in server_ms.items()},
        "errors": dict(stats.errors),
        "error_count": sum(stats.errors.values()),
        "ratings_created": stats.created,
        "ratings_not_created": stats.not_created,
        "raters_out_of_images": stats.exhausted,
        "cpu_seconds": {
            "gunicorn": round(server_cpu, 1),
            "load_client": round(client_cpu, 1),
            "gunicorn_ms_per_request": round(1000 * server_cpu / max(n_requests, 1), 1),
        },
        "loadavg_at_end": os.getloadavg(),
        "db": checks,
    }
    report(result)
    path = benchdb.write_json(args.json, result)
    log(f"wrote {path.relative_to(benchdb.REPO_ROOT)}")


def report(r: dict[str, Any]) -> None:
    log("")
    log(
        f"{r['requests']:,} requests in {r['wall_seconds']} s: "
        f"{r['requests_per_s']} req/s, {r['pairs_per_s']} next+submit pairs/s"
    )
    log(f"{'latency ms':<10} {'n':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}")
    for name, p in r["latency_ms"].items():
        if p["n"]:
            log(
                f"{name:<10} {p['n']:>7} {p['p50']:>7} {p['p95']:>7} "
                f"{p['p99']:>7} {p['max']:>7}"
            )
    log("server side (gunicorn access log, same requests):")
    for name, p in r["server_latency_ms"].items():
        if p["n"]:
            log(
                f"{name:<10} {p['n']:>7} {p['p50']:>7} {p['p95']:>7} "
                f"{p['p99']:>7} {p['max']:>7}"
            )
    log(f"errors (non-2xx or transport): {r['error_count']} {r['errors']}")
    log(
        f"ratings created {r['ratings_created']}, answered as already there "
        f"{r['ratings_not_created']}, raters out of images {r['raters_out_of_images']}"
    )
    log(
        f"CPU seconds: gunicorn {r['cpu_seconds']['gunicorn']}, "
        f"load client {r['cpu_seconds']['load_client']} "
        f"({r['cpu_seconds']['gunicorn_ms_per_request']} ms gunicorn CPU a request); "
        f"load average at end {tuple(round(x, 2) for x in r['loadavg_at_end'])}"
    )
    log(f"database after the run: {r['db']}")
    p95 = r["latency_ms"]["pair"].get("p95")
    worst = max(
        (p.get("p95", 0) for k, p in r["latency_ms"].items() if k != "pair"), default=0
    )
    log(
        f"targets: per-request p95 {worst} ms (<= 100: "
        f"{'met' if worst <= 100 else 'MISSED'}), pair p95 {p95} ms, "
        f"errors {r['error_count']} ({'met' if not r['error_count'] else 'MISSED'}), "
        f"duplicates {r['db']['duplicate_live_ratings']} "
        f"({'met' if not r['db']['duplicate_live_ratings'] else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
