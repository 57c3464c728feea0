"""Audit insert and token auth: hand-written SQL or the ORM, side by side.

The rating hot path of ``bench/hotpath.py`` (token auth, ``GET next``, ``POST
rating``, whose service writes one audit event) in one process, on the load
benchmark's seeded PostgreSQL database, in three arms:

- ``sql``: both hand-written (``leansql.insert``, the one-statement token and
  groups join);
- ``orm-audit``: the audit insert through ``AuditEvent.objects.create``;
- ``orm-token``: the token through one ``select_related("user")`` query,
  then the user's group names (a second query).

The arms run in alternating blocks (the order rotating every round) so that
the machine's noise falls on all of them alike.  Both versions of each
function live here, and are switched in by patching, so the bench can be
rerun whichever one the product keeps: ``annotations.audit.audit_record``
is replaced in every module that imported it, and
``TokenAuthentication.authenticate_credentials`` on the class.  Each arm
checks that its versions were the ones called.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/medrlhf_bench_sql \\
        python bench/audit_token.py [--pairs 150] [--rounds 10] [--micro 2000]

The rule, fixed before the first run (session 12), applied to audit and to
token auth separately: back to the ORM if its arm adds less than 3 % CPU per
rating, that is to the median CPU of ``next`` plus the median CPU of a
submit, against the ``sql`` arm; otherwise keep the hand-written SQL.  Wall
time and SQL statements are reported; they do not decide.  Neither does the
last figure: each version called alone (``--micro``), what it costs per call
without the rest of the request around it.

Figures go to stdout and ``bench/out/audit_token.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.security

import benchdb  # noqa: E402
from benchdb import log  # noqa: E402
from load import DB_NAME  # noqa: E402

ARMS = ("sql", "orm-audit", "orm-token")
THRESHOLD = 0.03  # the rule: less than 3 % more CPU per rating → ORM
KINDS = ("next", "submit")


# --- the two audit inserts ---------------------------------------------------


def _audit_fields(
    *,
    action: str,
    actor: Any,
    obj: Any,
    detail: Any,
    request: Any,
    actor_name: str,
) -> dict[str, Any]:
    from annotations.audit import client_ip

    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return {
        "actor": actor,
        "actor_name": actor_name or (actor.get_username() if actor else ""),
        "action": action,
        "object_type": obj._meta.label_lower if obj is not None else "",
        "object_id": str(obj.pk) if obj is not None else "",
        "detail": detail or {},
        "ip_address": client_ip(request),
    }


def _audit_record(kind: str) -> Callable[..., Any]:
    """``audit_record`` writing through the hand-written insert ("sql") or
    the ORM ("orm"), counting its calls."""

    def record(
        *,
        action: str,
        actor: Any = None,
        obj: Any = None,
        detail: Any = None,
        request: Any = None,
        actor_name: str = "",
    ) -> Any:
        from annotations import leansql
        from annotations.models import AuditEvent

        fields = _audit_fields(
            action=action,
            actor=actor,
            obj=obj,
            detail=detail,
            request=request,
            actor_name=actor_name,
        )
        CALLS[f"audit_{kind}"] += 1
        if kind == "sql":
            return leansql.insert(AuditEvent(**fields))
        return AuditEvent.objects.create(**fields)

    return record


audit_record_sql = _audit_record("sql")
audit_record_orm = _audit_record("orm")


# --- the two token look-ups --------------------------------------------------


@cache
def _token_columns() -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model

    from annotations import leansql
    from annotations.models import ApiToken

    return leansql.Columns(ApiToken, "t"), leansql.Columns(get_user_model(), "u")


def authenticate_sql(self: Any, key: str) -> tuple[Any, Any]:
    """``annotations.authentication`` as of main (3a2cd09)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.utils import timezone
    from rest_framework import exceptions

    from annotations import leansql
    from annotations.models import ApiToken as Token
    from annotations.roles import roles_preload
    from annotations.services.tokens import token_digest

    CALLS["token_sql"] += 1
    User = get_user_model()
    memberships = User.groups.through
    token_cols, user_cols = _token_columns()
    col = leansql.column
    user_pk = leansql.qn(User._meta.pk.column)
    group_pk = leansql.qn(Group._meta.pk.column)
    sql = (
        f"SELECT {token_cols.sql()}, {user_cols.sql()}, "
        f"g.{col(Group, 'name')} FROM {leansql.table(Token)} t "
        f"JOIN {leansql.table(User)} u ON u.{user_pk} = t.{col(Token, 'user')} "
        f"LEFT JOIN {leansql.table(memberships)} m "
        f"ON m.{col(memberships, 'user')} = u.{user_pk} "
        f"LEFT JOIN {leansql.table(Group)} g "
        f"ON g.{group_pk} = m.{col(memberships, 'group')} "
        f"WHERE t.{col(Token, 'digest')} = %s "
        f"AND t.{col(Token, 'revoked_at')} IS NULL "
        f"AND t.{col(Token, 'expires_at')} > %s"
    )
    now = leansql.prep(Token, "expires_at", timezone.now())
    with leansql.connection.cursor() as cur:
        cur.execute(sql, [token_digest(key), now])
        rows = cur.fetchall()
    if not rows:
        raise exceptions.AuthenticationFailed("Invalid token.")
    n_token, n_user = len(token_cols), len(user_cols)
    token = token_cols.instance(rows[0][:n_token])
    user = user_cols.instance(rows[0][n_token : n_token + n_user])
    if not user.is_active:
        raise exceptions.AuthenticationFailed("User inactive or deleted.")
    token.user = user
    roles_preload(user, [row[-1] for row in rows if row[-1] is not None])
    return user, token


def authenticate_orm(self: Any, key: str) -> tuple[Any, Any]:
    from tests.security.token_orm import token_auth_orm

    CALLS["token_orm"] += 1
    return token_auth_orm(key)


# --- switching ---------------------------------------------------------------

CALLS = dict.fromkeys(("audit_sql", "audit_orm", "token_sql", "token_orm"), 0)
_ORIGINAL: dict[str, Any] = {}


def use(*, audit: Callable[..., Any], token: Callable[..., Any]) -> None:
    """Put ``audit`` wherever ``audit_record`` was imported, ``token`` on the
    authentication class."""
    import annotations.audit
    from annotations.authentication import TokenAuthentication

    original = _ORIGINAL.setdefault("audit", annotations.audit.audit_record)
    known = {original, audit_record_sql, audit_record_orm}
    for module in list(sys.modules.values()):
        # The module's own names only: a module __getattr__ is not asked.
        found = getattr(module, "__dict__", {}).get("audit_record")
        if any(found is f for f in known):
            module.audit_record = audit  # type: ignore[union-attr]
    TokenAuthentication.authenticate_credentials = token  # type: ignore[method-assign]


ARM_FUNCTIONS = {
    "sql": (audit_record_sql, authenticate_sql),
    "orm-audit": (audit_record_orm, authenticate_sql),
    "orm-token": (audit_record_sql, authenticate_orm),
}
ARM_CALLS = {
    "sql": ("audit_sql", "token_sql"),
    "orm-audit": ("audit_orm", "token_sql"),
    "orm-token": ("audit_sql", "token_orm"),
}


def micro(n: int, round_id: int, raters: Any) -> dict[str, dict[str, float]]:
    """Each version alone, ``n`` calls each, alternated, in a transaction
    rolled back: median CPU microseconds per call."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from annotations.authentication import TokenAuthentication
    from annotations.models import Round

    user = get_user_model().objects.get(pk=raters.ids[0])
    rnd = Round.objects.get(pk=round_id)
    auth = TokenAuthentication()
    key = raters.tokens[0]
    versions = {
        "audit insert": {
            "sql": lambda: audit_record_sql(
                action="bench", actor=user, obj=rnd, detail={"round": 1, "score": 2}
            ),
            "orm": lambda: audit_record_orm(
                action="bench", actor=user, obj=rnd, detail={"round": 1, "score": 2}
            ),
        },
        "token auth": {
            "sql": lambda: authenticate_sql(auth, key),
            "orm": lambda: authenticate_orm(auth, key),
        },
    }
    out: dict[str, dict[str, float]] = {}
    with transaction.atomic():
        for what, fns in versions.items():
            times: dict[str, list[float]] = {"sql": [], "orm": []}
            for i in range(n):
                for label in ("sql", "orm") if i % 2 else ("orm", "sql"):
                    t0 = time.process_time()
                    fns[label]()
                    times[label].append((time.process_time() - t0) * 1e6)
            out[what] = {k: round(statistics.median(v), 1) for k, v in times.items()}
        transaction.set_rollback(True)
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cpu_per_rating(figures: dict[str, dict[str, list[float]]]) -> float:
    return sum(_median(figures[kind]["cpu"]) for kind in KINDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=150, help="per block")
    parser.add_argument("--rounds", type=int, default=10, help="blocks per arm")
    parser.add_argument(
        "--micro", type=int, default=2000, help="calls of each version alone"
    )
    args = parser.parse_args()
    # Django's files under MEDRLHF_VAR_DIR when given, not bench/out/var.
    if os.environ.get("MEDRLHF_VAR_DIR"):
        benchdb.VAR_DIR = Path(os.environ["MEDRLHF_VAR_DIR"])
    url = benchdb.database_url(DB_NAME)
    benchdb.django_setup(url)
    import hotpath
    from django.conf import settings

    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    load_start = os.getloadavg()
    round_id, raters, _ = hotpath.seed(url)
    log(f"database {url.rsplit('/', 1)[-1]}, round {round_id}, load {load_start}")

    pooled: dict[str, dict[str, dict[str, list[float]]]] = {arm: {} for arm in ARMS}
    per_round: list[dict[str, float]] = []
    try:
        # Unmeasured: every rater's first request in a process counts what
        # they finished (then cached for 300 s), which would fall on the first
        # measured block only; and each arm's versions run once.
        for arm in ARMS:
            use(audit=ARM_FUNCTIONS[arm][0], token=ARM_FUNCTIONS[arm][1])
            hotpath._requests(round_id, raters, len(raters.tokens), None)
        for r in range(args.rounds):
            order = ARMS[r % 3 :] + ARMS[: r % 3]
            this_round: dict[str, float] = {}
            for arm in order:
                audit, token = ARM_FUNCTIONS[arm]
                use(audit=audit, token=token)
                before = dict(CALLS)
                block: dict[str, dict[str, list[float]]] = {}
                hotpath._requests(round_id, raters, args.pairs, None, block)
                calls = {k: CALLS[k] - before[k] for k in CALLS}
                n = args.pairs + 10
                want_audit, want_token = ARM_CALLS[arm]
                # Every submit audits once; every request authenticates once.
                if calls[want_audit] != n or calls[want_token] != 2 * n:
                    raise SystemExit(f"arm {arm}: the switch failed: {calls}")
                if sum(calls.values()) != 3 * n:
                    raise SystemExit(f"arm {arm}: other versions ran: {calls}")
                for kind, figures in block.items():
                    into = pooled[arm].setdefault(
                        kind, {"cpu": [], "wall": [], "sql": []}
                    )
                    for key, values in figures.items():
                        into[key] += values
                this_round[arm] = _cpu_per_rating(block)
                cpu_next = _median(block["next"]["cpu"])
                cpu_submit = _median(block["submit"]["cpu"])
                log(
                    f"round {r + 1} {arm:<9} CPU next {cpu_next:5.2f} "
                    f"submit {cpu_submit:5.2f} ms"
                )
            per_round.append(this_round)
    finally:
        use(audit=_ORIGINAL["audit"], token=authenticate_sql)
    load_end = os.getloadavg()
    alone = micro(args.micro, round_id, raters) if args.micro else {}

    summary: dict[str, Any] = {}
    for arm in ARMS:
        summary[arm] = {
            kind: {
                "n": len(f["cpu"]),
                "cpu_ms_median": round(_median(f["cpu"]), 3),
                "wall_ms_median": round(_median(f["wall"]), 3),
                "sql_statements": _median(f["sql"]),
            }
            for kind, f in pooled[arm].items()
        }
        summary[arm]["cpu_ms_per_rating"] = round(_cpu_per_rating(pooled[arm]), 3)
    log("")
    log(f"load average: start {load_start}, end {load_end}")
    log(
        f"{'arm':<10} {'kind':<7} {'n':>5} {'CPU ms':>7} {'wall ms':>8} {'SQL':>4} "
        f"{'CPU ×sql':>8} {'wall ×sql':>9}"
    )
    for arm in ARMS:
        for kind in KINDS:
            s, base = summary[arm][kind], summary["sql"][kind]
            log(
                f"{arm:<10} {kind:<7} {s['n']:>5} {s['cpu_ms_median']:>7.2f} "
                f"{s['wall_ms_median']:>8.2f} {s['sql_statements']:>4} "
                f"{s['cpu_ms_median'] / base['cpu_ms_median']:>8.3f} "
                f"{s['wall_ms_median'] / base['wall_ms_median']:>9.3f}"
            )
    decisions = {}
    base = summary["sql"]["cpu_ms_per_rating"]
    for arm, what in (("orm-audit", "audit"), ("orm-token", "token auth")):
        extra = summary[arm]["cpu_ms_per_rating"] / base - 1
        rounds = sorted(x[arm] / x["sql"] - 1 for x in per_round)
        verdict = "ORM" if extra < THRESHOLD else "keep hand-written SQL"
        decisions[what] = {"extra_cpu": round(extra, 4), "per_round": rounds}
        decisions[what]["decision"] = verdict
        log(
            f"{what}: next + submit CPU {summary[arm]['cpu_ms_per_rating']:.2f} ms "
            f"against {base:.2f} ms: {extra:+.1%} (per round {rounds[0]:+.1%} .. "
            f"{rounds[-1]:+.1%}, median {statistics.median(rounds):+.1%}); rule "
            f"< {THRESHOLD:.0%}: {verdict}"
        )
    for what, t in alone.items():
        per_rating = t["orm"] - t["sql"]
        if what == "token auth":
            per_rating *= 2  # next and submit each authenticate
        log(
            f"{what} alone: {t['sql']:.0f} µs hand-written, {t['orm']:.0f} µs ORM "
            f"(median CPU per call, {args.micro} calls each): "
            f"{per_rating / 1000 / base:+.1%} of the sql arm's CPU per rating"
        )
    path = benchdb.write_json(
        "audit_token.json",
        {
            "machine": benchdb.machine(),
            "load_end": load_end,
            "pairs_per_block": args.pairs,
            "rounds": args.rounds,
            "summary": summary,
            "decisions": decisions,
            "alone_us": alone,
        },
    )
    log(f"written to {path}")


if __name__ == "__main__":
    main()
