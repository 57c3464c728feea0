"""Shared pieces of the benchmarks: the bench database, Django setup, bulk seeding.

Seeding writes rows with PostgreSQL ``COPY`` through psycopg 3, with explicit
ids into an empty database, so a seed of a million rows takes seconds, not the
hour that one ``save()`` per row would.  A seed is reused when the database
already holds exactly what the seed writes; otherwise the database is dropped
and created again.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
VAR_DIR = OUT_DIR / "var"

MODALITIES = ("CT", "MR", "CR", "fundus", "DX", "US")
PROMPTS = (
    "Axial CT of the chest, lung window, small nodule in the right upper lobe",
    "T2-weighted MR of the brain, axial slice at the level of the ventricles",
    "Frontal chest radiograph, no acute cardiopulmonary abnormality",
    "Colour fundus photograph of the left eye, mild non-proliferative retinopathy",
    "Coronal CT of the abdomen with contrast, portal venous phase",
    "Ultrasound of the liver, homogeneous echotexture, no focal lesion",
)
COMMENTS = (
    "",
    "",
    "",
    "",
    "slight blur at the edges",
    "=SUM(A1:A9) looks like a formula",
    "anatomy plausible, contrast too low",
    'quoted "text", with a comma',
)
FLAG_SETS = ("[]", "[]", "[]", "[]", '["artifact"]', '["implausible", "other"]')


def log(message: str) -> None:
    print(message, flush=True)


def database_url(default_name: str) -> str:
    """``BENCH_DATABASE_URL`` if set, else a local PostgreSQL database."""
    return os.environ.get(
        "BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{default_name}"
    )


def _conninfo(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def _maintenance_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    return urlunsplit(parts._replace(path="/postgres")), name


def database_create(url: str, *, drop: bool = False) -> bool:
    """Create the database if missing (dropping it first if asked); True if new."""
    import psycopg
    from psycopg import sql

    admin_url, name = _maintenance_url(url)
    with psycopg.connect(_conninfo(admin_url), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if exists and drop:
            log(f"dropping database {name} (seed inconsistent)")
            conn.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            )
            exists = None
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        log(f"created database {name}")
        return True


def server_env(url: str) -> dict[str, str]:
    """Environment for Django processes that use the bench database."""
    env = dict(os.environ)
    env.pop("MEDRLHF_ENV", None)
    env.update(
        DATABASE_URL=url,
        MEDRLHF_VAR_DIR=str(VAR_DIR),
        DJANGO_SETTINGS_MODULE="medrlhf.settings",
        # A server under load runs without DEBUG's query log, as it would
        # when deployed; MEDRLHF_ENV stays at development (no TLS redirect).
        DEBUG="False",
        LOG_LEVEL="WARNING",
        CELERY_BROKER_URL="memory://",
    )
    return env


def django_setup(url: str) -> None:
    os.environ.update(server_env(url))
    os.environ.pop("MEDRLHF_ENV", None)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    (VAR_DIR / "staticfiles").mkdir(parents=True, exist_ok=True)
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    log(f"migrated in {time.perf_counter() - t0:.1f} s")


def copy_rows(table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> int:
    """Stream ``rows`` into ``table`` with COPY; returns the row count."""
    from django.db import connection

    n = 0
    cols = ", ".join(columns)
    with connection.cursor() as cur:
        raw = cur.cursor
        with raw.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
    return n


def triggers_off_for_transaction() -> None:
    """Skip per-row foreign-key triggers while seeding rows built consistent.

    The foreign keys are checked once after the load instead (see
    ``foreign_keys_check``); needs a superuser, which the local bench server has.
    """
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")


def foreign_keys_check(table: str) -> None:
    """Fail if a row of ``table`` points at a row that does not exist."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """SELECT a.attname, c.confrelid::regclass::text, af.attname
                 FROM pg_constraint c
                 JOIN pg_attribute a
                   ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                 JOIN pg_attribute af
                   ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]
                WHERE c.contype = 'f' AND c.conrelid = %s::regclass""",
            [table],
        )
        for column, target, target_column in cur.fetchall():
            cur.execute(
                f"SELECT COUNT(*) FROM {table} t WHERE t.{column} IS NOT NULL "
                f"AND NOT EXISTS (SELECT 1 FROM {target} f "
                f"WHERE f.{target_column} = t.{column})"
            )
            missing = cur.fetchone()[0]
            if missing:
                raise RuntimeError(
                    f"seed error: {missing} rows of {table}.{column} point at no "
                    f"row of {target}"
                )


def sequences_reset(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        for table in tables:
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table}), 1))"
            )


def scalar(query: str, params: list[Any] | None = None) -> Any:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params or [])
        return cur.fetchone()[0]


@dataclass(frozen=True)
class Raters:
    ids: list[int]
    tokens: list[str]


def raters_ensure(*, prefix: str, n: int) -> Raters:
    """``n`` physicians with API tokens; no passwords (the bench uses tokens)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from annotations.models import RaterProfile, Role
    from annotations.services.tokens import token_issue

    User = get_user_model()
    group = Group.objects.get(name=Role.PHYSICIAN)
    ids: list[int] = []
    tokens: list[str] = []
    for i in range(n):
        user, created = User.objects.get_or_create(username=f"{prefix}{i:02d}")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            user.groups.add(group)
            RaterProfile.objects.create(
                user=user, expert_level=("trainee", "specialist", "expert")[i % 3]
            )
        # A fresh token per run: only a token's digest is stored.
        key, _ = token_issue(user=user)
        ids.append(user.pk)
        tokens.append(key)
    return Raters(ids=ids, tokens=tokens)


IMAGE_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "uid",
    "file",
    "preview",
    "sha256",
    "width",
    "height",
    "bit_depth",
    "channels",
    "modality",
    "prompt",
    "source",
    "source_path",
    "source_format",
    "header",
    "quarantined",
    "quarantine_reason",
    "generation",
)


def images_seed(n: int, *, rng: random.Random) -> None:
    """``n`` real image rows (ids 1..n); the files themselves do not exist."""
    now = datetime.now(UTC)

    def rows() -> Iterator[tuple]:
        for i in range(1, n + 1):
            uid = uuid.UUID(int=rng.getrandbits(128), version=4)
            folder = f"images/{uid.hex[:2]}/{uid.hex}"
            yield (
                i,
                now,
                now,
                uid,
                f"{folder}/bench_{i:06d}.png",
                f"{folder}/bench_{i:06d}_preview.png",
                f"{rng.getrandbits(256):064x}",
                512,
                512,
                16,
                1,
                MODALITIES[i % len(MODALITIES)],
                PROMPTS[i % len(PROMPTS)],
                "real",
                f"bench/source/{i:06d}.dcm",
                "dicom",
                "{}",
                False,
                "",
                "{}",
            )

    copy_rows("annotations_image", IMAGE_COLUMNS, rows())


def round_create(*, name: str, raters_per_image: int, settings: dict) -> int:
    from django.utils import timezone

    from annotations.models import Round, RoundStatus

    now = timezone.now()
    rnd = Round.objects.create(
        name=name,
        status=RoundStatus.RATING,
        raters_per_image=raters_per_image,
        settings=settings,
        opened_at=now,
    )
    return rnd.pk


@dataclass(frozen=True)
class RatedSeed:
    """Which raters rated image ``i`` of a round: ``counts(i)`` of them."""

    round_id: int
    n_images: int
    rater_ids: list[int]
    stride: int

    def raters_of(self, i: int, count: int) -> list[int]:
        n = len(self.rater_ids)
        return [self.rater_ids[(i + j * self.stride) % n] for j in range(count)]


def _score(assignment_id: int, image_index: int) -> int:
    return 1 + (assignment_id * 31 + image_index) % 3


def round_items_seed(
    *, seed: RatedSeed, counts: list[int], rng: random.Random, id_base: int = 0
) -> tuple[int, int]:
    """RoundImage, Assignment and Rating rows, counters consistent.

    Image ``i`` (1-based) gets ``counts[i-1]`` completed assignments and live
    ratings from distinct raters.  Returns (assignments, ratings) written.
    """
    now = datetime.now(UTC)
    start = now - timedelta(days=30)

    plan: list[tuple[int, int, int, datetime]] = []
    sums = [[0, 0] for _ in range(seed.n_images + 1)]
    aid = 0
    for i in range(1, seed.n_images + 1):
        for rater in seed.raters_of(i, counts[i - 1]):
            aid += 1
            served = start + timedelta(seconds=rng.randrange(30 * 86400))
            plan.append((aid, i, rater, served))
            score = _score(aid, i)
            sums[i][0] += score
            sums[i][1] += score * score

    def items() -> Iterator[tuple]:
        for i in range(1, seed.n_images + 1):
            c = counts[i - 1]
            yield (
                id_base + i,
                seed.round_id,
                i,
                False,
                False,
                rng.getrandbits(62),
                c,
                c,
                sums[i][0],
                sums[i][1],
            )

    copy_rows(
        "annotations_roundimage",
        (
            "id",
            "round_id",
            "image_id",
            "is_control",
            "in_agreement_set",
            "shuffle_key",
            "assigned_count",
            "rating_count",
            "score_sum",
            "score_sq_sum",
        ),
        items(),
    )

    def assignments() -> Iterator[tuple]:
        for a, i, rater, served in plan:
            done = served + timedelta(milliseconds=2000 + (a * 7919) % 20000)
            yield (a, id_base + i, seed.round_id, rater, served, "random", False, done)

    n_a = copy_rows(
        "annotations_assignment",
        (
            "id",
            "round_image_id",
            "round_id",
            "rater_id",
            "served_at",
            "policy",
            "is_repeat",
            "completed_at",
        ),
        assignments(),
    )

    def ratings() -> Iterator[tuple]:
        for a, i, rater, served in plan:
            taken = 2000 + (a * 7919) % 20000
            yield (
                a,
                rater,
                i,
                seed.round_id,
                a,
                _score(a, i),
                FLAG_SETS[a % len(FLAG_SETS)],
                COMMENTS[a % len(COMMENTS)],
                taken,
                served + timedelta(milliseconds=taken),
                False,
            )

    n_r = copy_rows(
        "annotations_rating",
        (
            "id",
            "rater_id",
            "image_id",
            "round_id",
            "assignment_id",
            "score",
            "flags",
            "comment",
            "time_taken_ms",
            "created_at",
            "is_repeat",
        ),
        ratings(),
    )
    return n_a, n_r


def analyze() -> None:
    from django.db import connection

    # As autovacuum would have by the time a round is this big: statistics,
    # and the visibility map that lets counts read indexes only.
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")


@dataclass
class Timer:
    t0: float = 0.0

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.t0


def _status_mb(field: str, pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def peak_rss_mb(pid: int | str = "self") -> float:
    """RSS high-water mark of this address space.

    VmHWM rather than ``getrusage``: Linux carries ``ru_maxrss`` across
    ``exec``, so a child would report its parent's peak.
    """
    return _status_mb("VmHWM", pid)


def current_rss_mb(pid: int | str = "self") -> float:
    return _status_mb("VmRSS", pid)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "cpus_visible": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_at_start": os.getloadavg(),
        "python": sys.version.split()[0],
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["mem_gib"] = round(int(mem) / 2**20, 1)
    except OSError:
        pass
    return info


def write_json(name: str, data: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
