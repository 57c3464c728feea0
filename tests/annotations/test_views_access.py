"""Who may open which page: 302 to log in, 403 for the wrong role, 404 for
objects the user may not see."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Role
from models_ml.models import Job, JobKind

pytestmark = pytest.mark.django_db

ANON, PHYS, ADMIN, RES = "anonymous", Role.PHYSICIAN, Role.ADMIN, Role.RESEARCHER


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def objects(make_round, admin_user):
    rnd = make_round(2)
    job = Job.objects.create(kind=JobKind.IMPORT, params={}, created_by=admin_user)
    return {"round": rnd.pk, "job": job.pk}


GET_MATRIX = [
    # url name, args key, {role: status}
    ("home", None, {PHYS: 200, ADMIN: 200, RES: 200}),
    ("rate", "round", {PHYS: 200, ADMIN: 403, RES: 403}),
    ("rounds", None, {PHYS: 403, ADMIN: 200, RES: 403}),
    ("rounds-create", None, {PHYS: 403, ADMIN: 200, RES: 403}),
    ("datasets", None, {PHYS: 403, ADMIN: 200, RES: 403}),
    ("job", "job", {PHYS: 403, ADMIN: 200, RES: 403}),
    ("job-status", "job", {PHYS: 403, ADMIN: 200, RES: 403}),
    ("export", None, {PHYS: 403, ADMIN: 200, RES: 200}),
    ("export-download", None, {PHYS: 403, ADMIN: 200, RES: 200}),
]

POST_MATRIX = [
    ("rate-submit", "round", {PHYS: 400, ADMIN: 403, RES: 403}),
    ("rate-skip", "round", {PHYS: 400, ADMIN: 403, RES: 403}),
    ("rate-undo", "round", {PHYS: 409, ADMIN: 403, RES: 403}),
    ("rounds-close", "round", {PHYS: 403, ADMIN: 200, RES: 403}),
    ("rounds-open", "round", {PHYS: 403, ADMIN: 200, RES: 403}),
    ("job-cancel", "job", {PHYS: 403, ADMIN: 286, RES: 403}),
    ("datasets-upload", None, {PHYS: 403, ADMIN: 400, RES: 403}),
    ("datasets-import-folder", None, {PHYS: 403, ADMIN: 400, RES: 403}),
]


def _url(name, key, objects):
    return reverse(name, args=[objects[key]] if key else [])


@pytest.mark.parametrize(("name", "key", "expected"), GET_MATRIX)
@pytest.mark.parametrize("role", [PHYS, ADMIN, RES])
def test_get_permission_matrix(client, make_user, objects, name, key, expected, role):
    client.force_login(make_user(role))
    response = client.get(_url(name, key, objects))
    assert response.status_code == expected[role]


@pytest.mark.parametrize(("name", "key", "expected"), POST_MATRIX)
@pytest.mark.parametrize("role", [PHYS, ADMIN, RES])
def test_post_permission_matrix(client, make_user, objects, name, key, expected, role):
    client.force_login(make_user(role))
    # htmx requests: errors and results come back as partials, not redirects.
    response = client.post(_url(name, key, objects), {}, HTTP_HX_REQUEST="true")
    assert response.status_code == expected[role]


@pytest.mark.parametrize(("name", "key"), [(n, k) for n, k, _ in GET_MATRIX])
def test_anonymous_is_sent_to_log_in(client, objects, name, key):
    url = _url(name, key, objects)
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_physician_not_among_the_raters_gets_404(client, make_round, make_user):
    chosen, other = make_user(PHYS), make_user(PHYS)
    rnd = make_round(1, raters=[chosen])
    client.force_login(other)
    assert client.get(reverse("rate", args=[rnd.pk])).status_code == 404
    post = client.post(reverse("rate-submit", args=[rnd.pk]), {"score": 1})
    assert post.status_code == 404


def test_draft_round_is_not_visible_to_physicians(client, make_round, physician):
    rnd = make_round(1, open_now=False)
    client.force_login(physician)
    assert client.get(reverse("rate", args=[rnd.pk])).status_code == 404


def test_missing_objects_are_404_for_admins(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("job", args=[999999])).status_code == 404
    assert client.post(reverse("rounds-close", args=[999999])).status_code == 404
    assert client.get(reverse("export-download"), {"round": 999999}).status_code == 404


def test_user_without_a_role_sees_an_empty_home_and_nothing_else(
    client, django_user_model, objects
):
    nobody = django_user_model.objects.create_user("nobody", password="x" * 12)
    client.force_login(nobody)
    assert client.get(reverse("home")).status_code == 200
    assert client.get(reverse("rate", args=[objects["round"]])).status_code == 403
    assert client.get(reverse("export")).status_code == 403
