"""Attack: send an ML job settings the schema never promised (a free
dictionary): unknown keys, huge values, model folders anywhere on the
server. Every job's settings are typed serializers with ranges, documented
in the OpenAPI schema, and paths must lie under the allowed roots."""

from __future__ import annotations

import pytest

from annotations.models import Role
from models_ml.api.job_settings import (
    FinetuneSettingsSerializer,
    RewardSettingsSerializer,
    RoundSettingsSerializer,
    TrainSettingsSerializer,
)
from models_ml.models import Job, ModelKind, ModelVersion
from models_ml.services import params

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "serializer, keys",
    [
        (TrainSettingsSerializer, params.TRAIN_KEYS),
        (FinetuneSettingsSerializer, params.FINETUNE_KEYS),
        (RewardSettingsSerializer, params.REWARD_KEYS),
        (RoundSettingsSerializer, params.ROUND_KEYS),
    ],
)
def test_the_api_types_exactly_the_settings_the_services_take(serializer, keys):
    assert set(serializer().fields) == set(keys)


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setattr("models_ml.services.jobs.job_enqueue", lambda *, job: None)
    return ModelVersion.objects.create(
        name="base", kind=ModelKind.DIFFUSION, path=str(tmp_path / "b")
    )


@pytest.mark.parametrize(
    "section, values, field",
    [
        ("finetune", {"max_steps": 10**12}, "max_steps"),
        ("finetune", {"objective": "evil"}, "objective"),
        ("finetune", {"learning_rate": "fast"}, "learning_rate"),
        ("finetune", {"model_path": "/etc"}, "model_path"),
        ("finetune", {"rm_rf": True}, "rm_rf"),
        ("reward", {"epochs": 10**9}, "epochs"),
        ("reward", {"features": "hf:/root"}, "features"),
        ("round", {"images_per_prompt": 10**6}, "images_per_prompt"),
        ("round", {"best_of_n": 1}, "best_of_n"),
        ("round", {"prompts": [["only one part"]]}, "prompts"),
    ],
)
def test_a_retraining_run_refuses_bad_settings_naming_them(
    client_as, base, section, values, field
):
    response = client_as(Role.ADMIN).post(
        "/api/retraining/", {section: values}, format="json"
    )
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()[section]
    assert not Job.objects.exists()


def test_a_model_folder_under_the_models_root_is_accepted(client_as, base, settings):
    folder = settings.MODELS_DIR / "sd-local"
    folder.mkdir()
    from models_ml.api.job_settings import check_under_roots

    assert check_under_roots(str(folder), "model_path") == str(folder.resolve())


def test_the_schema_documents_every_setting_with_its_range(client_as):
    schema = client_as(Role.ADMIN).get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    finetune = components["FinetuneSettingsRequest"]["properties"]
    assert finetune["max_steps"]["maximum"] == 1_000_000
    objective = finetune["objective"]
    ref = (objective.get("allOf") or [objective])[0].get("$ref", "")
    enum = components[ref.rsplit("/", 1)[-1]]["enum"] if ref else objective["enum"]
    assert set(enum) >= {"weighted", "filtered", "kto", "dpo"}
    start = components["RetrainingInputRequest"]["properties"]
    assert start["finetune"]["$ref"].endswith("/FinetuneSettingsRequest")
    assert start["round"]["$ref"].endswith("/ComparisonRoundSettingsRequest")
