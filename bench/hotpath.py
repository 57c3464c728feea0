"""The rating hot path in one process: CPU and SQL per "next" and per submit.

Runs the same requests as ``bench/load.py`` (token auth, ``GET next``, ``POST
rating``) through Django's full stack with the test client, in this process,
one rater after another, against the load benchmark's seeded PostgreSQL
database (seeded here if missing).  No network, no gunicorn, no concurrency:
what is left is the server's own cost per request, which bounds what two
cores can serve.

    python bench/hotpath.py [--pairs 300] [--profile 25] \
        [--serving random|uncertainty|both]

Prints CPU milliseconds per request (process time), wall milliseconds (the
database's share included) and SQL statements per request; ``--profile N``
also prints the N most expensive functions.  ``--serving uncertainty`` serves
the seeded round most informative first (each item given a random spread,
the seed's eight modalities balanced) for the run and puts it back to random
order afterwards; ``both`` runs random, then uncertainty, on the same seed
and prints the ratios.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402
from benchdb import log  # noqa: E402
from load import DB_NAME, seed  # noqa: E402


def serve_uncertainty(round_id: int, on: bool) -> None:
    """Switch the seeded round to most informative first (spreads drawn once,
    repeatably) or back to random order."""
    from django.db import connection

    with connection.cursor() as cur:
        if on:
            cur.execute("SELECT setseed(0.25)")
            cur.execute(
                "UPDATE annotations_roundimage SET uncertainty = random() "
                "WHERE round_id = %s AND uncertainty IS NULL",
                [round_id],
            )
        cur.execute(
            "UPDATE annotations_round SET serving_policy = %s, rescore_every = 0 "
            "WHERE id = %s",
            ["uncertainty" if on else "random", round_id],
        )


def run(
    pairs: int, profiler: cProfile.Profile | None, serving: str = "random"
) -> dict[str, object]:

    url = benchdb.database_url(DB_NAME)
    round_id, raters, _ = seed(url)
    serve_uncertainty(round_id, serving == "uncertainty")
    try:
        return _requests(round_id, raters, pairs, profiler)
    finally:
        serve_uncertainty(round_id, False)


def _requests(
    round_id: int,
    raters: Any,
    pairs: int,
    profiler: cProfile.Profile | None,
    samples: dict[str, dict[str, list[float]]] | None = None,
) -> dict[str, object]:
    """Send ``pairs`` measured pairs (after 10 unmeasured); the per-request
    figures also go to ``samples[kind]["cpu" | "wall" | "sql"]`` if given."""
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    rng = random.Random(7)
    cpu: dict[str, list[float]] = {"next": [], "submit": []}
    wall: dict[str, list[float]] = {"next": [], "submit": []}
    queries: dict[str, list[int]] = {"next": [], "submit": []}

    def timed(kind: str, call: Callable[[], Any]) -> Any:
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            t0, w0 = time.process_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            response = call()
            if profiler is not None:
                profiler.disable()
            cpu[kind].append((time.process_time() - t0) * 1000)
            wall[kind].append((time.perf_counter() - w0) * 1000)
        queries[kind].append(len(captured))
        return response

    # Warm-up: imports, URL resolver, prepared caches; not measured.
    tokens = raters.tokens
    for i in range(pairs + 10):
        headers = {"HTTP_AUTHORIZATION": f"Token {tokens[i % len(tokens)]}"}
        measure = i >= 10
        get = partial(client.get, f"/api/rounds/{round_id}/next/", **headers)
        r = timed("next", get) if measure else get()
        if r.status_code != 200:
            raise SystemExit(f"next answered {r.status_code}: {r.content[:200]!r}")
        uid = r.json()["image"]["uid"]
        body = {
            "round": round_id,
            "image": uid,
            "score": rng.randint(1, 3),
            "flags": [],
            "comment": "",
            "time_taken_ms": 4000,
        }
        post = partial(
            client.post,
            "/api/ratings/",
            body,
            content_type="application/json",
            **headers,
        )
        r = timed("submit", post) if measure else post()
        if r.status_code not in (200, 201):
            raise SystemExit(f"submit answered {r.status_code}: {r.content[:200]!r}")
    if samples is not None:
        for kind in cpu:
            into = samples.setdefault(kind, {"cpu": [], "wall": [], "sql": []})
            into["cpu"] += cpu[kind]
            into["wall"] += wall[kind]
            into["sql"] += queries[kind]
    return {
        kind: {
            "n": len(values),
            "cpu_ms_median": round(statistics.median(values), 2),
            "cpu_ms_mean": round(statistics.fmean(values), 2),
            "wall_ms_median": round(statistics.median(wall[kind]), 2),
            "sql_statements": statistics.median(queries[kind]),
        }
        for kind, values in cpu.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument(
        "--serving", choices=("random", "uncertainty", "both"), default="random"
    )
    args = parser.parse_args()
    benchdb.django_setup(benchdb.database_url(DB_NAME))
    from django.conf import settings

    # CaptureQueriesContext needs the query log; DEBUG stays off.
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    profiler = cProfile.Profile() if args.profile else None
    policies = ("random", "uncertainty") if args.serving == "both" else (args.serving,)
    results = {}
    for policy in policies:
        results[policy] = result = run(args.pairs, profiler, policy)
        for kind, r in result.items():
            log(
                f"{policy:<11} {kind:<7} n={r['n']:<5} CPU {r['cpu_ms_median']:6.2f} "
                f"ms median, {r['cpu_ms_mean']:6.2f} ms mean; wall "
                f"{r['wall_ms_median']:6.2f} ms median; {r['sql_statements']} SQL "
                "statements"
            )
    if len(results) == 2:
        for kind in ("next", "submit"):
            a, b = results["random"][kind], results["uncertainty"][kind]
            log(
                f"uncertainty / random, {kind}: CPU "
                f"{b['cpu_ms_median'] / a['cpu_ms_median']:.2f}x, wall "
                f"{b['wall_ms_median'] / a['wall_ms_median']:.2f}x"
            )
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(
            args.profile
        )
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(
            args.profile
        )
        print(out.getvalue())


if __name__ == "__main__":
    main()
