"""The CSV export gives the same bytes on every database and on both paths.

PostgreSQL formats the CSV in ``COPY`` (``export_rows_copy``); SQLite goes
through the ORM (``export_rows_python``).  Each database checks the path it
serves against a CSV written out by hand; PostgreSQL also checks that its two
paths agree byte for byte.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from annotations.exports import (
    export_rows,
    export_rows_copy,
    export_rows_python,
    ratings_for_export,
)
from annotations.models import (
    Assignment,
    ImageSource,
    RaterProfile,
    Rating,
    Round,
    RoundImage,
    RoundStatus,
)
from models_ml.models import ModelKind, ModelVersion
from tests.factories import ImageFactory, UserFactory

pytestmark = pytest.mark.django_db

ON_POSTGRES = connection.vendor == "postgresql"

# One row per live rating of the round, in id order.  Quoted cells, embedded
# newlines and a bare CR, formula prefixes (= + - @ tab CR) escaped with a
# leading apostrophe, NULLs and empty strings both empty, a rating with no
# assignment (empty is_control), a rater with no profile (empty expert_level),
# and a test-retest repeat flagged in the last column.
EXPECTED = (
    "image_path,rating,modality,expert_level,prompt,rater,round,round_id,"
    "image_uid,image_source,is_control,model_version,reward_score,flags,comment,"
    "time_taken_ms,created_at,is_repeat\n"
    'images/01/a.png,3,CT,expert,"Axial CT, ""quoted""\nsecond line",dr.a,'
    '"\'=Round ""one"", 2024",{round_id},00000000000000000000000000000001,'
    'real,False,,,artifact;other,"said ""hi"", then\nleft",1500,'
    "2024-05-01T12:00:00+00:00,False\n"
    "images/02/b.png,1,'+MR,,'-3 dB lesion,'@drb,"
    '"\'=Round ""one"", 2024",{round_id},00000000000000000000000000000002,'
    "generated,False,'=cmd|' /C calc'!A0,1.0,,'=1+1,,"
    "2024-05-01T12:00:01.250000+00:00,False\n"
    "images/03/c.png,2,'@fundus,expert,Fundus 眼底 🫀 é,dr.a,"
    '"\'=Round ""one"", 2024",{round_id},00000000000000000000000000000003,'
    'real,True,,0.1,implausible,"a\rb",0,'
    "2024-05-01T12:00:02.000001+00:00,False\n"
    "images/04/d.png,2,'\tX-ray,,\"'\rreturn first\",'@drb,"
    '"\'=Round ""one"", 2024",{round_id},00000000000000000000000000000004,'
    "real,,,1e-05,,,20000,"
    "2024-12-31T23:59:59.999999+00:00,False\n"
    "images/02/b.png,2,'+MR,,'-3 dB lesion,'@drb,"
    '"\'=Round ""one"", 2024",{round_id},00000000000000000000000000000002,'
    "generated,,'=cmd|' /C calc'!A0,1.0,,,3000,"
    "2024-05-01T12:00:03+00:00,True\n"
)


def _at(second: int, micro: int = 0) -> datetime:
    return datetime(2024, 5, 1, 12, 0, second, micro, tzinfo=UTC)


def _image(n: int, **fields: Any) -> Any:
    image = ImageFactory(modality="CT", prompt="p")
    fields.setdefault("file", f"images/{n:02d}/{'abcd'[n - 1]}.png")
    fields.setdefault("uid", uuid.UUID(int=n))
    type(image).objects.filter(pk=image.pk).update(**fields)
    image.refresh_from_db()
    return image


def _rating(rnd: Round, rater: Any, image: Any, **fields: Any) -> Rating:
    created_at = fields.pop("created_at")
    control = fields.pop("control", None)
    assignment = None
    if control is not None:
        item, _ = RoundImage.objects.get_or_create(
            round=rnd, image=image, defaults={"is_control": control, "shuffle_key": 1}
        )
        assignment = Assignment.objects.create(
            round_image=item, round=rnd, rater=rater, completed_at=created_at
        )
    rating = Rating.objects.create(
        rater=rater, image=image, round=rnd, assignment=assignment, **fields
    )
    Rating.objects.filter(pk=rating.pk).update(created_at=created_at)
    return rating


@pytest.fixture
def tricky_round() -> Round:
    """A round whose five live ratings hold every awkward value the CSV meets."""
    dr_a = UserFactory(role="physician", username="dr.a")
    RaterProfile.objects.filter(user=dr_a).update(expert_level="expert")
    dr_b = UserFactory(role="physician", username="@drb")
    RaterProfile.objects.filter(user=dr_b).delete()
    model = ModelVersion.objects.create(
        name="=cmd|' /C calc'!A0", kind=ModelKind.DIFFUSION, path="/m"
    )
    im1 = _image(1, prompt='Axial CT, "quoted"\nsecond line')
    im2 = _image(
        2,
        modality="+MR",
        prompt="-3 dB lesion",
        source=ImageSource.GENERATED,
        model_version=model,
        reward_score=1.0,
    )
    im3 = _image(3, modality="@fundus", prompt="Fundus 眼底 🫀 é", reward_score=0.1)
    im4 = _image(4, modality="\tX-ray", prompt="\rreturn first", reward_score=1e-05)
    rnd = Round.objects.create(
        name='=Round "one", 2024', status=RoundStatus.RATING, raters_per_image=2
    )
    other = Round.objects.create(name="other", status=RoundStatus.RATING)
    _rating(
        rnd,
        dr_a,
        im1,
        control=False,
        score=3,
        flags=["artifact", "other"],
        comment='said "hi", then\nleft',
        time_taken_ms=1500,
        created_at=_at(0),
    )
    _rating(
        rnd,
        dr_b,
        im2,
        control=False,
        score=1,
        flags=[],
        comment="=1+1",
        time_taken_ms=None,
        created_at=_at(1, 250_000),
    )
    _rating(
        rnd,
        dr_a,
        im3,
        control=True,
        score=2,
        flags=["implausible"],
        comment="a\rb",
        time_taken_ms=0,
        created_at=_at(2, 1),
    )
    _rating(
        rnd,
        dr_b,
        im4,
        score=2,
        flags=[],
        comment="",
        time_taken_ms=20000,
        created_at=datetime(2024, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    )
    _rating(
        rnd,
        dr_b,
        im2,
        score=2,
        is_repeat=True,
        time_taken_ms=3000,
        created_at=_at(3),
    )
    _rating(
        rnd,
        dr_a,
        im4,
        score=3,
        retracted_at=_at(5),
        created_at=_at(4),
    )
    _rating(other, dr_a, im1, score=1, created_at=_at(6))
    return rnd


def _text(rows: Any) -> str:
    return "".join(rows)


def test_export_of_a_round_matches_the_hand_written_csv(tricky_round):
    text = _text(export_rows(ratings_for_export(round_id=tricky_round.pk)))
    assert text == EXPECTED.format(round_id=tricky_round.pk)


def test_export_picks_the_path_of_the_database_in_use(tricky_round):
    rows = export_rows(ratings_for_export(round_id=tricky_round.pk))
    expected = "export_rows_copy" if ON_POSTGRES else "export_rows_python"
    assert rows.__name__ == expected


def test_python_path_matches_the_hand_written_csv(tricky_round):
    text = _text(export_rows_python(ratings_for_export(round_id=tricky_round.pk)))
    assert text == EXPECTED.format(round_id=tricky_round.pk)


def test_python_path_yields_one_record_per_item(tricky_round):
    rows = list(export_rows_python(ratings_for_export(round_id=tricky_round.pk)))
    assert len(rows) == 6 and all(r.endswith("\n") for r in rows)


def test_absolute_paths_join_the_media_root(tricky_round):
    rows = list(
        export_rows(ratings_for_export(round_id=tricky_round.pk), absolute_paths=True)
    )
    root = Path(settings.MEDIA_ROOT)
    assert rows[1].startswith(str(root / "images/01/a.png") + ",3,")
    assert rows[4].startswith(str(root / "images/04/d.png") + ",2,")
    assert rows[5].startswith(str(root / "images/02/b.png") + ",2,")


def test_abandoned_export_leaves_the_connection_usable(tricky_round):
    rows = export_rows(ratings_for_export())
    next(rows)
    next(rows)
    rows.close()
    assert Rating.objects.filter(round=tricky_round).count() == 6


@pytest.mark.skipif(not ON_POSTGRES, reason="COPY exists only on PostgreSQL")
@pytest.mark.parametrize("absolute_paths", [False, True])
@pytest.mark.parametrize("scope", ["round", "all"])
def test_copy_and_python_paths_give_the_same_bytes(tricky_round, absolute_paths, scope):
    round_id = tricky_round.pk if scope == "round" else None
    qs = ratings_for_export(round_id=round_id)
    python = _text(export_rows_python(qs, absolute_paths=absolute_paths))
    copy = _text(export_rows_copy(qs, absolute_paths=absolute_paths))
    assert copy == python
    assert python.count("\n") > 5


@pytest.mark.skipif(not ON_POSTGRES, reason="COPY exists only on PostgreSQL")
def test_copy_path_yields_one_record_per_item(tricky_round):
    rows = list(export_rows_copy(ratings_for_export(round_id=tricky_round.pk)))
    assert len(rows) == 6 and all(r.endswith("\n") for r in rows)


@pytest.mark.skipif(not ON_POSTGRES, reason="COPY exists only on PostgreSQL")
def test_copy_path_binds_the_round_filter_as_a_parameter(tricky_round):
    from annotations.exports import copy_sql

    statement, params = copy_sql(ratings_for_export(round_id=tricky_round.pk))
    assert str(tricky_round.pk) not in statement.split("WHERE", 1)[1]
    assert tricky_round.pk in params
