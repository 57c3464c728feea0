"""The physician's rating page, driven through the views."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotations.models import Assignment, Rating
from annotations.services.rounds import round_close

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _uid_in(response) -> str:
    """The uid of the image the panel asks to rate ('' on the end screen)."""
    found = re.search(r'name="image" value="([0-9a-f-]+)"', response.content.decode())
    return found.group(1).replace("-", "") if found else ""


def _current_uid(client, rnd) -> str:
    response = client.get(reverse("rate", args=[rnd.pk]))
    assert response.status_code == 200
    return _uid_in(response)


def _submit(client, rnd, uid: str, score: int = 2, **extra):
    data = {"image": uid, "score": score, **extra}
    return client.post(reverse("rate-submit", args=[rnd.pk]), data, **HTMX)


def test_rating_page_shows_prompt_modality_and_image_by_uid_only(
    client, physician, make_round
):
    rnd = make_round(2)
    client.force_login(physician)
    response = client.get(reverse("rate", args=[rnd.pk]))
    html = response.content.decode()
    image = response.context["image"]
    assert response.status_code == 200
    assert image.prompt in html and image.modality in html
    assert reverse("rate-image", args=[rnd.pk, image.uid]) in html
    text = re.sub(r"<[^>]+>", " ", html).lower()
    assert not re.search(r"\b(real|generated|controls?|model)\b", text)
    assert image.dataset.name not in html
    # The image on screen and the one held next, which the page preloads.
    upcoming = response.context["upcoming"]
    assert upcoming is not None and upcoming.uid != image.uid
    assert set(re.findall(r"/images/([0-9a-f-]+)\.png", html)) == {
        str(image.uid),
        str(upcoming.uid),
    }


def test_htmx_submit_returns_the_partial_with_the_next_image(
    client, physician, make_round
):
    rnd = make_round(3)
    client.force_login(physician)
    first = _current_uid(client, rnd)
    response = _submit(client, rnd, first, score=3, time_taken_ms=1500)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="rater"')
    assert "<html" not in html
    assert _uid_in(response) != first
    rating = Rating.objects.get()
    assert (rating.score, rating.time_taken_ms) == (3, 1500)


def test_flags_and_comment_are_recorded(client, physician, make_round):
    rnd = make_round(1)
    client.force_login(physician)
    uid = _current_uid(client, rnd)
    _submit(client, rnd, uid, score=1, flags=["artifact", "implausible"], comment="odd")
    rating = Rating.objects.get()
    assert rating.flags == ["artifact", "implausible"]
    assert rating.comment == "odd"


def test_double_submit_creates_one_rating(client, physician, make_round):
    rnd = make_round(3)
    client.force_login(physician)
    uid = _current_uid(client, rnd)
    first = _submit(client, rnd, uid, score=2)
    second = _submit(client, rnd, uid, score=2)
    assert (first.status_code, second.status_code) == (200, 200)
    assert Rating.objects.filter(round=rnd).count() == 1


def test_changed_score_on_a_rated_image_is_a_409_shown_in_the_page(
    client, physician, make_round
):
    rnd = make_round(3)
    client.force_login(physician)
    uid = _current_uid(client, rnd)
    _submit(client, rnd, uid, score=2)
    response = _submit(client, rnd, uid, score=3)
    assert response.status_code == 409
    assert "already rated" in response.content.decode()
    assert Rating.objects.get().score == 2


def test_invalid_score_is_a_400_with_a_message(client, physician, make_round):
    rnd = make_round(1)
    client.force_login(physician)
    uid = _current_uid(client, rnd)
    response = _submit(client, rnd, uid, score=7)
    assert response.status_code == 400
    assert "score must be 1, 2 or 3" in response.content.decode()
    assert not Rating.objects.exists()


def test_undo_withdraws_the_last_rating_and_serves_the_image_again(
    client, physician, make_round
):
    rnd = make_round(3)
    client.force_login(physician)
    uid = _current_uid(client, rnd)
    _submit(client, rnd, uid, score=1)
    response = client.post(reverse("rate-undo", args=[rnd.pk]), **HTMX)
    assert response.status_code == 200
    assert _uid_in(response) == uid
    assert "withdrawn" in response.content.decode()
    assert Rating.objects.get().retracted_at is not None
    _submit(client, rnd, uid, score=3)
    assert Rating.objects.filter(retracted_at=None).get().score == 3


def test_undo_with_nothing_rated_is_a_409(client, physician, make_round):
    rnd = make_round(1)
    client.force_login(physician)
    response = client.post(reverse("rate-undo", args=[rnd.pk]), **HTMX)
    assert response.status_code == 409
    assert "no rating to undo" in response.content.decode()


def test_skip_moves_on_without_a_rating(client, physician, make_round):
    rnd = make_round(2)
    client.force_login(physician)
    uid = _current_uid(client, rnd)
    response = client.post(reverse("rate-skip", args=[rnd.pk]), {"image": uid}, **HTMX)
    assert response.status_code == 200
    assert _uid_in(response) != uid
    assert not Rating.objects.exists()
    assert Assignment.objects.get(round_image__image__uid=uid).skipped_at is not None


def test_end_screen_once_everything_is_rated(client, physician, make_round):
    rnd = make_round(2)
    client.force_login(physician)
    for _ in range(2):
        _submit(client, rnd, _current_uid(client, rnd), score=2)
    response = client.get(reverse("rate", args=[rnd.pk]))
    assert response.context["image"] is None
    assert "All done" in response.content.decode()


def test_post_without_htmx_redirects_back_to_the_page(client, physician, make_round):
    rnd = make_round(2)
    client.force_login(physician)
    uid = _current_uid(client, rnd)
    response = client.post(
        reverse("rate-submit", args=[rnd.pk]), {"image": uid, "score": 3}
    )
    assert response.status_code == 302
    assert response.url == reverse("rate", args=[rnd.pk])


def test_rating_a_closed_round_is_a_409_with_a_message(
    client, physician, admin_user, make_round
):
    rnd = make_round(2)
    client.force_login(physician)
    uid = _current_uid(client, rnd)
    round_close(round=rnd, actor=admin_user)
    response = _submit(client, rnd, uid, score=2)
    assert response.status_code == 409
    assert "not open for rating" in response.content.decode()
    assert not Rating.objects.exists()


def test_prompt_is_escaped_in_the_page(client, physician, make_round):
    rnd = make_round(1)
    item = rnd.items.get()
    item.image.prompt = "<script>window.__xss=1</script><img src=x onerror=alert(1)>"
    item.image.save(update_fields=["prompt"])
    client.force_login(physician)
    html = client.get(reverse("rate", args=[rnd.pk])).content.decode()
    assert "<script>window.__xss" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert "<img src=x" not in html


def test_page_is_served_with_a_strict_content_security_policy(
    client, physician, make_round
):
    rnd = make_round(1)
    client.force_login(physician)
    response = client.get(reverse("rate", args=[rnd.pk]))
    assert "script-src 'self'" in response["Content-Security-Policy"]
    html = response.content.decode()
    assert "<script>" not in html and " style=" not in html


def test_rating_page_names_the_modality_as_a_physician_says_it(
    client, make_round, physician
):
    rnd = make_round(1)
    image = rnd.items.get().image
    image.modality = "chest_xray"
    image.save(update_fields=["modality"])
    client.force_login(physician)
    page = client.get(f"/rate/{rnd.pk}/").content.decode()
    assert '<span class="modality" data-testid="modality">Chest X-ray</span>' in page
    assert "chest_xray" not in page
