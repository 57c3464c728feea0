"""Hand-written hot-path SQL gives the same instances and rows as the ORM."""

from __future__ import annotations

import uuid

import pytest

from annotations import leansql
from annotations.models import AuditEvent, Image, Rating, Round, RoundImage
from annotations.rating.serving import assignment_next
from annotations.rating.submit import rating_submit
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db


def _image_sql(cols: leansql.Columns) -> str:
    return f"SELECT {cols.sql()} FROM {leansql.table(Image)} i WHERE i.id = %s"


def test_instances_match_the_orm_field_by_field_with_every_converter(db):
    # uid (UUID: text on SQLite), header (JSON), quarantined (bool: 0/1 on
    # SQLite), created_at (datetime: text on SQLite), floats and files.
    image = ImageFactory(
        window_center=40.5, header={"Modality": "CT", "n": [1, 2]}, quarantined=True
    )
    cols = leansql.Columns(Image, "i")
    ((lean,),) = leansql.fetch(_image_sql(cols), [image.pk], cols)
    orm = Image.objects.get(pk=image.pk)
    for field in Image._meta.concrete_fields:
        assert getattr(lean, field.attname) == getattr(orm, field.attname), field.name
    assert isinstance(lean.uid, uuid.UUID)
    assert lean.header == {"Modality": "CT", "n": [1, 2]}
    assert lean.quarantined is True
    assert lean.created_at.tzinfo is not None
    assert lean.file.name == orm.file.name
    assert lean._state.adding is False


def test_fields_not_selected_are_deferred_and_still_load(db, django_assert_num_queries):
    image = ImageFactory(prompt="CT: a prompt", header={"k": "v"})
    cols = leansql.Columns(Image, "i", ["uid", "prompt"])
    ((lean,),) = leansql.fetch(_image_sql(cols), [image.pk], cols)
    assert lean.get_deferred_fields() >= {"header", "sha256", "width"}
    with django_assert_num_queries(0):
        assert lean.prompt == "CT: a prompt"
    with django_assert_num_queries(1):
        assert lean.header == {"k": "v"}


def test_unknown_field_names_are_refused():
    with pytest.raises(ValueError, match="Image has no field 'nope'"):
        leansql.Columns(Image, "i", ["uid", "nope"])


def test_an_outer_join_that_found_nothing_gives_none(make_round):
    rnd = make_round(1)
    item = RoundImage.objects.get(round=rnd)
    ri_cols = leansql.Columns(RoundImage, "ri")
    rating_cols = leansql.Columns(Rating, "x")
    sql = (
        f"SELECT {ri_cols.sql()}, {rating_cols.sql()} "
        f"FROM {leansql.table(RoundImage)} ri "
        f"LEFT JOIN {leansql.table(Rating)} x ON x.image_id = ri.image_id "
        "WHERE ri.id = %s"
    )
    ((lean_item, rating),) = leansql.fetch(sql, [item.pk], ri_cols, rating_cols)
    assert lean_item.pk == item.pk and rating is None


def test_insert_stamps_auto_now_add_prepares_json_and_sets_the_pk(physician):
    event = leansql.insert(
        AuditEvent(
            actor=physician,
            actor_name=physician.username,
            action="test",
            detail={"nested": {"a": [1, "two"]}},
        )
    )
    assert event.pk is not None and event._state.adding is False
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.detail == {"nested": {"a": [1, "two"]}}
    assert stored.created_at == event.created_at and stored.created_at is not None
    assert stored.actor_id == physician.pk and stored.ip_address is None
    # Append-only still holds for what the lean insert wrote.
    with pytest.raises(ValueError, match="append-only"):
        stored.save()


def test_a_served_showing_carries_its_item_and_image_without_more_queries(
    physician, make_round, django_assert_num_queries
):
    rnd = make_round(2)
    assignment = assignment_next(round=rnd, rater=physician)
    again = assignment_next(round=rnd, rater=physician)  # the current showing
    assert again.pk == assignment.pk and again.served_at == assignment.served_at
    expected = Image.objects.values_list("uid", "prompt", "modality").get(
        round_items__assignments=assignment
    )
    for shown in (assignment, again):
        with django_assert_num_queries(0):
            image = shown.round_image.image
            assert (image.uid, image.prompt, image.modality) == expected
            assert shown.round_image.round_id == rnd.pk


def test_a_lean_rating_row_equals_what_the_orm_reads(physician, make_round):
    rnd = make_round(1)
    image = assignment_next(round=rnd, rater=physician).round_image.image
    rating, created = rating_submit(
        round=rnd,
        rater=physician,
        image_uid=image.uid,
        score=3,
        flags=["other", "artifact"],
        comment="  edge  ",
        time_taken_ms=1234,
    )
    assert created
    stored = Rating.objects.get(pk=rating.pk)
    for field in Rating._meta.concrete_fields:
        assert getattr(rating, field.attname) == getattr(stored, field.attname), (
            field.name
        )
    assert stored.flags == ["artifact", "other"] and stored.comment == "edge"
    again, created = rating_submit(
        round=rnd, rater=physician, image=image, score=3, flags=["artifact", "other"]
    )
    assert not created and again.pk == rating.pk
    assert again.created_at == stored.created_at


def test_rating_submit_takes_exactly_one_of_image_and_uid(physician, make_round):
    rnd = make_round(1)
    image = Round.objects.get(pk=rnd.pk).items.get().image
    with pytest.raises(TypeError):
        rating_submit(round=rnd, rater=physician, score=2)
    with pytest.raises(TypeError):
        rating_submit(
            round=rnd, rater=physician, image=image, image_uid=image.uid, score=2
        )
