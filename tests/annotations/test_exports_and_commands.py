from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from annotations.exports import (
    EXPORT_COLUMNS,
    csv_safe,
    export_rows,
    ratings_for_export,
)
from annotations.models import AuditEvent, Role
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit, rating_undo

pytestmark = pytest.mark.django_db


def _rate_all(rnd, rater, score=3, comment=""):
    while (a := assignment_next(round=rnd, rater=rater)) is not None:
        rating_submit(
            round=rnd,
            rater=rater,
            image=a.round_image.image,
            score=score,
            comment=comment,
        )


@pytest.mark.parametrize("value", ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_formula_like_cells_are_escaped(value):
    assert csv_safe(value) == "'" + value


def test_plain_cells_are_left_alone():
    assert csv_safe("CT: axial") == "CT: axial" and csv_safe(3) == 3


def test_export_has_the_seed_columns_first_and_one_row_per_live_rating(
    make_round, physician
):
    rnd = make_round(3)
    _rate_all(rnd, physician, comment='=HYPERLINK("x")')
    rating_undo(round=rnd, rater=physician)
    text = "".join(export_rows(ratings_for_export(round_id=rnd.pk)))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0].keys()) == list(EXPORT_COLUMNS)
    assert EXPORT_COLUMNS[:5] == (
        "image_path",
        "rating",
        "modality",
        "expert_level",
        "prompt",
    )
    assert len(rows) == 2
    row = rows[0]
    assert row["rating"] == "3" and row["expert_level"] == "specialist"
    assert row["rater"] == physician.username and row["round"] == rnd.name
    assert row["image_source"] == "real" and row["is_control"] == "False"
    assert row["comment"].startswith("'=")


def test_export_of_other_round_is_empty(make_round, physician):
    rnd = make_round(1)
    _rate_all(rnd, physician)
    other = make_round(1, name="other")
    text = "".join(export_rows(ratings_for_export(round_id=other.pk)))
    assert text.strip() == ",".join(EXPORT_COLUMNS)


def test_export_ratings_command_writes_a_file(make_round, physician, tmp_path):
    rnd = make_round(2)
    _rate_all(rnd, physician)
    out = tmp_path / "ratings.csv"
    call_command(
        "export_ratings", "--round", str(rnd.pk), "-o", str(out), "--absolute-paths"
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and rows[0]["image_path"].startswith("/")
    assert AuditEvent.objects.filter(action="export_ratings").exists()


def test_create_user_prints_a_random_password_once_and_sets_the_role(capsys):
    call_command("create_user", "dr_a", "--role", Role.PHYSICIAN)
    call_command("create_user", "dr_b", "--role", Role.PHYSICIAN)
    out = capsys.readouterr().out.splitlines()
    pw_a, pw_b = (line.rsplit(" ", 1)[1] for line in out)
    assert pw_a != pw_b and len(pw_a) >= 20
    user = authenticate(RequestFactory().post("/"), username="dr_a", password=pw_a)
    assert user is not None
    assert list(user.groups.values_list("name", flat=True)) == ["physician"]


def test_create_user_refuses_unknown_role_and_duplicates():
    with pytest.raises(CommandError):
        call_command("create_user", "x", "--role", "superhero")
    call_command("create_user", "dup", "--role", Role.ADMIN)
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_user", "dup", "--role", Role.ADMIN)


def test_ratings_and_rounds_are_audited_and_audit_rows_are_append_only(
    make_round, physician
):
    rnd = make_round(1)
    _rate_all(rnd, physician)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"round_create", "round_open", "rating_submit"} <= actions
    event = AuditEvent.objects.first()
    with pytest.raises(ValueError):
        event.save()
    with pytest.raises(ValueError):
        event.delete()


def test_failed_login_is_audited(client):
    client.post("/admin/login/", {"username": "ghost", "password": "wrong"})
    assert AuditEvent.objects.filter(action="login_failed", actor_name="ghost").exists()
