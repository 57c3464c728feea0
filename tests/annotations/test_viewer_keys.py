"""A physician's own keys for the rating page."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from annotations.models import AuditEvent, RaterProfile
from annotations.viewer_keys import (
    ACTIONS,
    KeyMapError,
    key_map_clean,
    key_map_full,
    keys_for,
)

pytestmark = pytest.mark.django_db


def test_defaults_bind_every_action_once():
    keys = key_map_full(None)
    assert set(keys) == set(ACTIONS)
    assert len(set(keys.values())) == len(keys)
    assert keys["score_1"] == "1" and keys["preset_lung"] == "l"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"score_9": "9"}, "unknown action"),
        ({"score_1": "ctrl+1"}, "not a key"),
        ({"score_1": "escape"}, "not a key"),
        ({"score_1": ""}, "not a key"),
        ({"score_1": 1}, "must be text"),
        ({"score_1": "s"}, "bound to both"),
        ({"score_1": "numpad1", "score_2": "numpad1"}, "bound to both"),
        (["score_1"], "must be an object"),
    ],
)
def test_bad_key_maps_are_refused_with_the_reason(overrides, message):
    with pytest.raises(KeyMapError, match=message):
        key_map_clean(overrides)


def test_numpad_named_keys_and_case_are_accepted():
    cleaned = key_map_clean(
        {"score_1": "Numpad1", "score_2": "numpad2", "score_3": "NUMPAD3", "skip": " "}
    )
    assert cleaned == {
        "score_1": "numpad1",
        "score_2": "numpad2",
        "score_3": "numpad3",
        "skip": "space",
    }
    # A key equal to its default is not stored as an override.
    assert key_map_clean({"undo": "U"}) == {}


def test_the_keys_page_saves_and_the_rating_page_uses_them(
    client, physician, make_round
):
    rnd = make_round(2)
    client.force_login(physician)
    form = {f"key_{a}": default for a, (_, default) in ACTIONS.items()}
    form.update(key_score_1="numpad1", key_score_2="numpad2", key_score_3="numpad3")
    response = client.post(
        reverse("rate-keys") + f"?next=/rate/{rnd.pk}/", {**form, "auto_advance": ""}
    )
    assert response.status_code == 302 and response["Location"] == f"/rate/{rnd.pk}/"
    profile = RaterProfile.objects.get(user=physician)
    assert profile.key_map == {
        "score_1": "numpad1",
        "score_2": "numpad2",
        "score_3": "numpad3",
    }
    assert profile.auto_advance is False
    assert AuditEvent.objects.filter(action="viewer_keys_update").exists()
    html = client.get(reverse("rate", args=[rnd.pk])).content.decode()
    keys = json.loads(
        re.search(
            r'<script id="rater-keys" type="application/json">(.*?)</script>', html
        ).group(1)
    )
    assert keys["score_1"] == "numpad1" and keys["skip"] == "s"
    assert 'data-auto-advance="0"' in html


def test_a_duplicate_key_is_shown_on_the_page_and_nothing_is_saved(client, physician):
    client.force_login(physician)
    form = {f"key_{a}": default for a, (_, default) in ACTIONS.items()}
    form["key_skip"] = "1"
    response = client.post(reverse("rate-keys"), {**form, "auto_advance": "on"})
    assert response.status_code == 400
    assert "bound to both" in response.content.decode()
    assert keys_for(physician)[0]["skip"] == "s"


def test_the_keys_page_never_redirects_off_site(client, physician):
    client.force_login(physician)
    form = {f"key_{a}": default for a, (_, default) in ACTIONS.items()}
    for target in ("https://evil.example/", "//evil.example/rate/", "/manage/"):
        response = client.post(reverse("rate-keys") + f"?next={target}", form)
        assert response["Location"] == reverse("rate-keys")


def test_only_physicians_have_rating_keys(client, researcher):
    client.force_login(researcher)
    assert client.get(reverse("rate-keys")).status_code == 403


def test_a_stored_map_that_no_longer_checks_falls_back_to_defaults(physician):
    RaterProfile.objects.filter(user=physician).update(key_map={"score_1": "s"})
    physician.refresh_from_db()
    assert keys_for(physician)[0]["score_1"] == "1"
