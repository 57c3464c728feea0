"""Export benchmark: stream 1,000,000 ratings as CSV and watch time and memory.

Seeds a PostgreSQL database with 100,000 images and one round of 1,000,000
ratings (reused when already there), then measures, each in a fresh process so
that peak memory belongs to one path only:

- ``copy``: PostgreSQL's own ``COPY (same query) TO STDOUT`` of the raw
  columns, unformatted, the baseline;
- ``export``: ``export_rows(ratings_for_export())``, the path that the page,
  the API and ``manage.py export_ratings`` share (on PostgreSQL, COPY of the
  formatted columns);
- ``python``: ``export_rows_python``, the ORM path that SQLite uses;
- ``http``: ``GET /api/export/ratings.csv`` from gunicorn, when the route exists.

Every output goes to a null sink.  Figures go to stdout and
``bench/out/export.json``.

    python bench/export.py [--skip-http] [--skip-python]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402
from benchdb import log  # noqa: E402

DB_NAME = "medrlhf_bench_export"
ROUND_NAME = "bench-export"
N_IMAGES = 100_000
RATERS_PER_IMAGE = 10
N_RATINGS = N_IMAGES * RATERS_PER_IMAGE
RATER_PREFIX = "bench_rater_"
RESEARCHER = "bench_researcher"
SEEDED_TABLES = (
    "annotations_image",
    "annotations_roundimage",
    "annotations_assignment",
    "annotations_rating",
)


def _live_ratings() -> int:
    return benchdb.scalar(
        "SELECT COUNT(*) FROM annotations_rating WHERE retracted_at IS NULL"
    )


def _researcher_token() -> str:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from annotations.models import Role
    from annotations.services.tokens import token_issue

    user, created = get_user_model().objects.get_or_create(username=RESEARCHER)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        user.groups.add(Group.objects.get(name=Role.RESEARCHER))
    return token_issue(user=user)[0]


def seed(url: str) -> tuple[int, float]:
    """The export round's id and the seconds seeding took (0 work if reused)."""
    from django.db import connections, transaction

    t0 = time.perf_counter()
    benchdb.database_create(url)
    benchdb.django_setup(url)
    benchdb.migrate()
    from annotations.models import Round

    rnd = Round.objects.filter(name=ROUND_NAME).first()
    images = benchdb.scalar("SELECT COUNT(*) FROM annotations_image")
    if rnd is not None and images == N_IMAGES and _live_ratings() == N_RATINGS:
        log(f"reusing the seed in round {rnd.pk}")
        return rnd.pk, time.perf_counter() - t0
    if rnd is not None or images:
        connections.close_all()
        benchdb.database_create(url, drop=True)
        benchdb.database_create(url)
        benchdb.migrate()
    rng = random.Random(20240602)
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
            round_id=round_id, n_images=N_IMAGES, rater_ids=raters.ids, stride=7
        )
        benchdb.round_items_seed(
            seed=rated, counts=[RATERS_PER_IMAGE] * N_IMAGES, rng=rng
        )
        benchdb.sequences_reset(*SEEDED_TABLES)
        for table in SEEDED_TABLES:
            benchdb.foreign_keys_check(table)
    benchdb.analyze()
    if _live_ratings() != N_RATINGS:
        raise SystemExit("the fresh seed does not hold the expected ratings")
    took = time.perf_counter() - t0
    log(f"seeded in {took:.1f} s")
    return round_id, took


def _export_sql() -> tuple[str, tuple[Any, ...]]:
    """The SQL of the export's own query, so the baseline reads the same rows."""
    from annotations.exports import _FIELDS, ratings_for_export

    query = ratings_for_export().values_list(*_FIELDS).query
    sql, params = query.sql_with_params()
    return sql, tuple(params)


def phase_copy() -> tuple[int, int]:
    """PostgreSQL formats the CSV itself; Python only moves the bytes."""
    from django.db import connection

    sql, params = _export_sql()
    n_bytes = n_lines = 0
    with connection.cursor() as cur:
        with cur.cursor.copy(
            f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)", params
        ) as copy:
            for block in copy:
                n_bytes += len(block)
                n_lines += bytes(block).count(b"\n")
    return n_lines - 1, n_bytes


def _consume(records: Any) -> tuple[int, int]:
    """Rows (one record per item, header excluded) and characters."""
    n_bytes = n_records = 0
    for record in records:
        n_bytes += len(record)
        n_records += 1
    return n_records - 1, n_bytes


def phase_export() -> tuple[int, int]:
    from annotations.exports import export_rows, ratings_for_export

    return _consume(export_rows(ratings_for_export()))


def phase_python() -> tuple[int, int]:
    from annotations.exports import export_rows_python, ratings_for_export

    return _consume(export_rows_python(ratings_for_export()))


PHASES = {"copy": phase_copy, "export": phase_export, "python": phase_python}


def run_phase(name: str) -> None:
    """Child process: one measurement, one JSON line on stdout."""
    benchdb.django_setup(os.environ["DATABASE_URL"])
    from django.db import connection

    connection.ensure_connection()
    import annotations.exports  # noqa: F401

    base = benchdb.current_rss_mb()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    rows, n_bytes = PHASES[name]()
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "phase": name,
                "rows": rows,
                "bytes": n_bytes,
                "seconds": round(wall, 2),
                "cpu_seconds": round(time.process_time() - cpu0, 2),
                "rows_per_s": round(rows / wall),
                "rss_baseline_mb": round(base, 1),
                "rss_peak_mb": round(benchdb.peak_rss_mb(), 1),
                "rss_peak_increase_mb": round(benchdb.peak_rss_mb() - base, 1),
            }
        )
    )


def measure(name: str, url: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--phase", name],
        env=benchdb.server_env(url),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker_pids(master: int) -> list[int]:
    path = Path(f"/proc/{master}/task/{master}/children")
    return [int(p) for p in path.read_text().split()]


def measure_http(url: str, round_id: int) -> dict[str, Any] | None:
    """Stream the API export from one gunicorn worker; None without the route."""
    import httpx
    from load import free_port, gunicorn_start, gunicorn_stop, gunicorn_wait

    token = _researcher_token()
    port = free_port()
    proc = gunicorn_start(url, port=port, workers=1, threads=2)
    try:
        gunicorn_wait(proc, port, timeout=60)
        headers = {"Authorization": f"Token {token}", "Accept": "text/csv"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            # A first small request loads the app, so the baseline includes it.
            # An unknown round answers the API's own 404 when the route exists
            # and Django's HTML 404 when it does not.
            probe = client.get(
                "/api/export/ratings.csv", params={"round": 999_999}, headers=headers
            )
            if "html" in probe.headers.get("content-type", ""):
                log(f"no export API ({probe.status_code}): skipping the http path")
                return None
            worker = _worker_pids(proc.pid)[0]
            base = benchdb.current_rss_mb(worker)
            n_bytes = n_lines = 0
            t0 = time.perf_counter()
            with client.stream(
                "GET",
                "/api/export/ratings.csv",
                params={"round": round_id},
                headers=headers,
            ) as resp:
                if resp.status_code != 200:
                    log(f"export API answered {resp.status_code}: skipping http")
                    return None
                for chunk in resp.iter_raw(1 << 16):
                    n_bytes += len(chunk)
                    n_lines += chunk.count(b"\n")
            wall = time.perf_counter() - t0
            peak = benchdb.peak_rss_mb(worker)
    finally:
        gunicorn_stop(proc)
    rows = n_lines - 1
    return {
        "phase": "http",
        "rows": rows,
        "bytes": n_bytes,
        "seconds": round(wall, 2),
        "rows_per_s": round(rows / wall),
        "rss_baseline_mb": round(base, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_peak_increase_mb": round(peak - base, 1),
        "note": "RSS of the gunicorn worker; time includes the client on the "
        "same cores",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--skip-python", action="store_true", help="leave out the ORM path"
    )
    parser.add_argument("--json", default="export.json", help="file under bench/out/")
    args = parser.parse_args()
    if args.phase:
        run_phase(args.phase)
        return

    url = benchdb.database_url(DB_NAME)
    info = benchdb.machine()
    log(f"machine: {info}")
    round_id, seed_s = seed(url)
    from django.db import connections

    connections.close_all()
    results = {}
    for name in ("copy", "export") + (() if args.skip_python else ("python",)):
        log(f"measuring {name} ...")
        results[name] = measure(name, url)
    if not args.skip_http:
        log("measuring http ...")
        http = measure_http(url, round_id)
        if http is not None:
            results["http"] = http
    result = {
        "machine": info,
        "seed_seconds": round(seed_s, 1),
        "ratings": N_RATINGS,
        "results": results,
        "export_vs_copy_rows_per_s": round(
            results["export"]["rows_per_s"] / results["copy"]["rows_per_s"], 3
        ),
        "loadavg_at_end": os.getloadavg(),
    }
    report(result)
    path = benchdb.write_json(args.json, result)
    log(f"wrote {path.relative_to(benchdb.REPO_ROOT)}")


def report(r: dict[str, Any]) -> None:
    log("")
    log(
        f"{'path':<8} {'rows':>9} {'s':>7} {'rows/s':>9} {'MB out':>7} "
        f"{'RSS base':>9} {'RSS peak':>9} {'peak-base':>9}"
    )
    for name, p in r["results"].items():
        log(
            f"{name:<8} {p['rows']:>9} {p['seconds']:>7} {p['rows_per_s']:>9} "
            f"{p['bytes'] / 2**20:>7.0f} {p['rss_baseline_mb']:>9} "
            f"{p['rss_peak_mb']:>9} {p['rss_peak_increase_mb']:>9}"
        )
    log(f"export / COPY rows per second: {r['export_vs_copy_rows_per_s']}")
    e = r["results"]["export"]
    fast = "met" if e["rows_per_s"] >= 100_000 else "MISSED"
    small = "met" if e["rss_peak_mb"] < 200 else "MISSED"
    log(
        f"targets: {e['rows_per_s']:,} rows/s (>= 100,000: {fast}), "
        f"peak RSS {e['rss_peak_mb']} MB (< 200: {small})"
    )
    log(f"load average at end {tuple(round(x, 2) for x in r['loadavg_at_end'])}")


if __name__ == "__main__":
    main()
