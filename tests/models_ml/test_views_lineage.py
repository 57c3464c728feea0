"""The lineage page: admins only; every version nested under its parent."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Role
from annotations.views.charts import wilson_interval
from models_ml.models import Job, JobKind
from tests.factories import DatasetFactory

from .ml_page_data import diffusion, reward

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.RESEARCHER])
def test_non_admins_are_refused(client, make_user, role):
    client.force_login(make_user(role))
    assert client.get(reverse("ml-lineage")).status_code == 403


def test_child_version_is_nested_under_its_parent_with_facts_and_job_link(
    client, admin_user, make_round
):
    job = Job.objects.create(kind=JobKind.FINETUNE, params={})
    dataset = DatasetFactory(name="retina set")
    base = diffusion("base", dataset=dataset, metrics={"steps": 40})
    child = diffusion(
        "tuned",
        parent=base,
        job=job,
        metrics={"steps": 10, "losses": [0.5, 0.25]},
    )
    rnd = make_round(name="round one")
    rew = reward("reward one", rating_count=12, metrics={"spearman": 0.61234})
    rew.trained_on_rounds.set([rnd])
    client.force_login(admin_user)
    response = client.get(reverse("ml-lineage"))
    html = response.content.decode()
    assert response.status_code == 200
    base_at = html.index(f'id="version-{base.pk}"')
    child_at = html.index(f'id="version-{child.pk}"')
    reward_at = html.index(f'id="version-{rew.pk}"')
    assert base_at < child_at < reward_at
    # The child's item opens inside the base's nested list.
    assert '<ul class="tree">' in html[base_at:child_at]
    assert "retina set" in html[base_at:child_at]
    assert reverse("ml-job", args=[job.pk]) in html[child_at:reward_at]
    assert "final loss</span> 0.250" in html[child_at:reward_at]
    assert "Spearman</span> 0.612" in html[reward_at:]
    assert "round one" in html[reward_at:]


def test_wilson_interval_matches_known_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4)
    assert hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == 1.0
