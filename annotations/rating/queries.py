"""Every hand-written statement of the rating hot path, each a named function
(the API token look-up that every rating request starts with included).

A physician's "next image" and "submit rating" run a dozen statements each;
through the ORM every one cost 1-3 ms of CPU to build and compile, which made
CPU, not the database, the limit of the load benchmark (docs/benchmarks.md,
"Fifth pass (session 3): the hot path without the ORM"; ``bench/hotpath.py``
measures it). So these few are written out here, once, and their rows become
ordinary model instances (``annotations.leansql``). The rest of the rating
subsystem (``serving.py``, ``submit.py``) goes through the ORM.

``tests/annotations/test_rating_queries.py`` and ``test_leansql.py`` check
each against the ORM's answer. Only table and column names from model
metadata are formatted into SQL; every value is a bound parameter.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection

from .. import leansql
from ..models import ApiToken, Assignment, Image, Rating, Round, RoundImage
from ..users import User

ROUND_FIELDS_FOR_RATING = (
    "name",
    "status",
    "raters_per_image",
    "control_share",
    "agreement_share",
    "repeat_share",
    "serving_policy",
    "rescore_every",
    "display_size",
)
IMAGE_FIELDS_SERVED = (
    "uid",
    "file",
    "preview",
    "width",
    "height",
    "bit_depth",
    "channels",
    "window_center",
    "window_width",
    "modality",
    "prompt",
    "quarantined",
)
_A = leansql.Columns(Assignment, "a")
_RI = leansql.Columns(RoundImage, "ri")
_IMG = leansql.Columns(Image, "i", IMAGE_FIELDS_SERVED)
_RATING = leansql.Columns(Rating, "x")


def may_rate_sql() -> str:
    """``access.rater_may_rate``'s list rule as SQL about the round ``r``,
    with one parameter (the rater's id): the round lists no raters, or lists
    this one."""
    listed = leansql.table(Round.raters.through)
    return (
        f"(NOT EXISTS (SELECT 1 FROM {listed} l WHERE l.round_id = r.id) "  # noqa: S608
        f"OR EXISTS (SELECT 1 FROM {listed} l WHERE l.round_id = r.id "
        "AND l.user_id = %s))"
    )


def round_for_rating(round_id: int, rater: User) -> Round:
    """The round with what serving and rating read, and whether ``rater``'s
    name is on its list (``access.rater_may_rate`` then answers from the
    row), in one statement. Other fields are deferred. Raises
    ``Round.DoesNotExist``."""
    cols = leansql.Columns(Round, "r", ROUND_FIELDS_FOR_RATING)
    sql = (
        f"SELECT {cols.sql()}, {may_rate_sql()} "  # noqa: S608
        f"FROM {leansql.table(Round)} r WHERE r.id = %s"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [rater.pk, round_id])
        row = cur.fetchone()
    if row is None:
        raise Round.DoesNotExist("no such round")
    rnd = cast(Round, cols.instance(row[:-1]))
    rnd.rater_check_for, rnd.rater_check = rater.pk, bool(row[-1])
    return rnd


def round_lock_for_rating(
    round_id: int, *, rater_id: int | None, lock_rater: bool
) -> tuple[Any, ...] | None:
    """Share-lock the round and read (status, raters_per_image,
    serving_policy, rescore_every, listed) in one statement; with
    ``lock_rater`` also the rater's user row FOR UPDATE (PostgreSQL), so one
    physician's requests run one at a time. None when there is no round.

    FOR SHARE lets many raters proceed at once while blocking ``round_close``'s
    FOR UPDATE; SQLite's IMMEDIATE transactions serialise writers anyway.
    """
    users = get_user_model()._meta.db_table
    sql = (
        "SELECT r.status, r.raters_per_image, r.serving_policy, r.rescore_every, "  # noqa: S608
        f"{may_rate_sql()} FROM {leansql.table(Round)} r"
    )
    params: list[Any] = [rater_id]
    postgres = connection.vendor == "postgresql"
    if lock_rater and postgres:
        sql += f" JOIN {leansql.qn(users)} u ON u.id = %s"
        params.append(rater_id)
    sql += " WHERE r.id = %s"
    params.append(round_id)
    if postgres:
        sql += " FOR SHARE OF r" + (" FOR UPDATE OF u" if lock_rater else "")
    with connection.cursor() as cur:
        cur.execute(sql, params)
        row: tuple[Any, ...] | None = cur.fetchone()
    return row


def _showings_sql(where: str, *, lock: bool = False) -> str:
    """A physician's showings joined with their items and images."""
    sql = (
        f"SELECT {_A.sql()}, {_RI.sql()}, {_IMG.sql()} "  # noqa: S608
        f"FROM {leansql.table(Assignment)} a "
        f"JOIN {leansql.table(RoundImage)} ri ON ri.id = a.round_image_id "
        f"JOIN {leansql.table(Image)} i ON i.id = ri.image_id "
        f"WHERE a.round_id = %s AND a.rater_id = %s AND {where}"
    )
    if lock and connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF a"
    return sql


def _linked(row: tuple[Any, ...]) -> Assignment:
    assignment: Assignment = row[0]
    item: RoundImage = row[1]
    item.image = row[2]
    assignment.round_image = item
    return assignment


def showing_current(round: Round, rater: User) -> Assignment | None:
    """The physician's open showing served last (a reload shows it again),
    else the one held as their next (``upcoming`` set), in one query."""
    sql = _showings_sql(
        "a.completed_at IS NULL AND a.skipped_at IS NULL AND a.expired_at IS NULL"
    )
    rows = leansql.fetch(
        sql + " ORDER BY a.upcoming, a.served_at DESC LIMIT 1",
        [round.pk, rater.pk],
        _A,
        _RI,
        _IMG,
    )
    return _linked(rows[0]) if rows else None


def showings_of_image(
    round: Round, rater: User, *, image: Image | None, image_uid: Any
) -> list[Assignment]:
    """Every showing of one image to the physician, locked (FOR UPDATE)."""
    if image is not None:
        where, param = "ri.image_id = %s", image.pk
    else:
        where, param = "i.uid = %s", leansql.prep(Image, "uid", image_uid)
    rows = leansql.fetch(
        _showings_sql(where, lock=True), [round.pk, rater.pk, param], _A, _RI, _IMG
    )
    return [_linked(row) for row in rows]


def showing_started(assignment: Assignment) -> None:
    """The held next image is shown now: write its ``upcoming`` and
    ``served_at`` as set on the instance."""
    leansql.execute(
        f"UPDATE {leansql.table(Assignment)} SET upcoming = %s, "  # noqa: S608
        "served_at = %s WHERE id = %s",
        [
            leansql.prep(Assignment, "upcoming", assignment.upcoming),
            leansql.prep(Assignment, "served_at", assignment.served_at),
            assignment.pk,
        ],
    )


def item_in_shuffle_order(round: Round, rater: User, start: int) -> RoundImage | None:
    """Random order: the first free image at or after ``start`` in shuffled
    order (one walk of ``round_shuffle_idx``, then from the beginning), with
    its image. Items another physician is being served right now are
    skipped, not waited for."""
    sql = (
        f"SELECT {_RI.sql()}, {_IMG.sql()} "  # noqa: S608
        f"FROM {leansql.table(RoundImage)} ri "
        f"JOIN {leansql.table(Image)} i ON i.id = ri.image_id "
        "WHERE ri.round_id = %s AND NOT ri.in_agreement_set "
        "AND ri.assigned_count < %s AND NOT i.quarantined "
        f"AND NOT EXISTS (SELECT 1 FROM {leansql.table(Assignment)} a "
        "WHERE a.round_image_id = ri.id AND a.rater_id = %s) "
        "AND ri.shuffle_key {op} %s ORDER BY ri.shuffle_key LIMIT 1"
    )
    if connection.features.has_select_for_update_skip_locked:
        sql += " FOR UPDATE OF ri SKIP LOCKED"
    params = [round.pk, round.raters_per_image, rater.pk, start]
    for op in (">=", "<"):
        rows = leansql.fetch(sql.replace("{op}", op), params, _RI, _IMG)
        if rows:
            item: RoundImage = rows[0][0]
            item.image = rows[0][1]
            return item
    return None


def item_assigned_add(item_id: int) -> None:
    """One more physician holds a place of the item."""
    leansql.execute(
        f"UPDATE {leansql.table(RoundImage)} "  # noqa: S608
        "SET assigned_count = assigned_count + 1 WHERE id = %s",
        [item_id],
    )


def assignment_insert(assignment: Assignment) -> Assignment:
    return leansql.insert(assignment)


def rating_live(
    round: Round, rater: User, image: Image, *, is_repeat: bool
) -> Rating | None:
    """The physician's live (not retracted) first rating, or repeat, of the
    image in the round."""
    sql = (
        f"SELECT {_RATING.sql()} FROM {leansql.table(Rating)} x "  # noqa: S608
        "WHERE x.rater_id = %s AND x.image_id = %s AND x.round_id = %s "
        "AND x.is_repeat = %s AND x.retracted_at IS NULL LIMIT 1"
    )
    params = [
        rater.pk,
        image.pk,
        round.pk,
        leansql.prep(Rating, "is_repeat", is_repeat),
    ]
    rows = leansql.fetch(sql, params, _RATING)
    if not rows:
        return None
    rating: Rating = rows[0][0]
    rating.image = image
    return rating


def rating_insert(rating: Rating) -> Rating:
    return leansql.insert(rating)


def assignment_completed(assignment_id: int, at: datetime) -> None:
    """The showing is rated: completed, neither skipped nor expired."""
    leansql.execute(
        f"UPDATE {leansql.table(Assignment)} SET completed_at = %s, "  # noqa: S608
        "skipped_at = NULL, expired_at = NULL WHERE id = %s",
        [leansql.prep(Assignment, "completed_at", at), assignment_id],
    )


def item_rating_add(item_id: int, *, score: int, took_place: bool) -> None:
    """A first rating joins the item's count and score sums (and its place,
    when the showing had lost it)."""
    leansql.execute(
        f"UPDATE {leansql.table(RoundImage)} SET "  # noqa: S608
        "rating_count = rating_count + 1, score_sum = score_sum + %s, "
        "score_sq_sum = score_sq_sum + %s, assigned_count = assigned_count + %s "
        "WHERE id = %s",
        [score, score * score, 1 if took_place else 0, item_id],
    )


def ratings_live_count(round_id: int, rater_id: int) -> int:
    """The physician's live ratings in the round: index-only on the partial
    index of live ratings, asked on every "next" (``round_progress``)."""
    return int(
        leansql.scalar(
            f"SELECT COUNT(*) FROM {leansql.table(Rating)} "  # noqa: S608
            "WHERE round_id = %s AND rater_id = %s AND retracted_at IS NULL",
            [round_id, rater_id],
        )
    )


@cache
def _token_columns() -> tuple[leansql.Columns, leansql.Columns]:
    return leansql.Columns(ApiToken, "t"), leansql.Columns(get_user_model(), "u")


def token_with_user(
    digest: str, now: datetime
) -> tuple[ApiToken, User, list[str]] | None:
    """The live (not revoked, not expired) token with this key digest, its
    user and the user's group names, in one statement: the user row comes
    once per group. None when there is no such token. Against the ORM (the
    token with ``select_related("user")``, then the groups) this saves about
    0.9 ms of CPU a request (``bench/audit_token.py``, session 12);
    ``tests/security/test_token_auth_parity.py`` holds it equal to the ORM."""
    users = get_user_model()
    memberships = users.groups.through
    token_cols, user_cols = _token_columns()
    col = leansql.column
    user_pk = leansql.qn(users._meta.pk.column)
    group_pk = leansql.qn(Group._meta.pk.column)
    sql = (
        f"SELECT {token_cols.sql()}, {user_cols.sql()}, "  # noqa: S608
        f"g.{col(Group, 'name')} FROM {leansql.table(ApiToken)} t "
        f"JOIN {leansql.table(users)} u ON u.{user_pk} = t.{col(ApiToken, 'user')} "
        f"LEFT JOIN {leansql.table(memberships)} m "
        f"ON m.{col(memberships, 'user')} = u.{user_pk} "
        f"LEFT JOIN {leansql.table(Group)} g "
        f"ON g.{group_pk} = m.{col(memberships, 'group')} "
        f"WHERE t.{col(ApiToken, 'digest')} = %s "
        f"AND t.{col(ApiToken, 'revoked_at')} IS NULL "
        f"AND t.{col(ApiToken, 'expires_at')} > %s"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [digest, leansql.prep(ApiToken, "expires_at", now)])
        rows = cur.fetchall()
    if not rows:
        return None
    n_token, n_user = len(token_cols), len(user_cols)
    token = cast(ApiToken, token_cols.instance(rows[0][:n_token]))
    user = cast(User, user_cols.instance(rows[0][n_token : n_token + n_user]))
    return token, user, [row[-1] for row in rows if row[-1] is not None]
