"""The settings module as operators meet it: env-driven, safe in production."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    full_env = {
        k: v
        for k, v in os.environ.items()
        # The browser tests' conftest sets DJANGO_ALLOW_ASYNC_UNSAFE for Playwright.
        if k
        not in {
            "SECRET_KEY",
            "MEDRLHF_ENV",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    full_env.update(
        {
            "MEDRLHF_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "medrlhf.settings",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_a_real_secret_key(tmp_path):
    code = "import django; django.setup()"
    missing = _run(code, {"MEDRLHF_ENV": "production"}, tmp_path)
    weak = _run(code, {"MEDRLHF_ENV": "production", "SECRET_KEY": "changeme"}, tmp_path)
    for result in (missing, weak):
        assert result.returncode != 0
        assert "SECRET_KEY must be set" in result.stderr


PRODUCTION = {
    "MEDRLHF_ENV": "production",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "medrlhf.example.org",
}


def _check_deploy(env: dict[str, str], tmp_path: Any) -> Any:
    return _run(
        "from django.core.management import execute_from_command_line;"
        "execute_from_command_line(['manage.py', 'check', '--deploy', "
        "'--fail-level', 'WARNING'])",
        env,
        tmp_path,
    )


def test_production_passes_check_deploy(tmp_path):
    # The cache is checked, not connected to.
    env = {**PRODUCTION, "CACHE_URL": "redis://127.0.0.1:6379/1"}
    result = _check_deploy(env, tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_check_deploy_warns_about_a_per_process_cache(tmp_path):
    result = _check_deploy(PRODUCTION, tmp_path)
    assert result.returncode != 0
    assert "medrlhf.W001" in result.stderr + result.stdout
    assert "CACHE_URL" in result.stderr + result.stdout


def test_development_key_is_random_per_machine_and_kept_out_of_the_repo(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = _run(code, {}, tmp_path).stdout.strip()
    second = _run(code, {}, tmp_path).stdout.strip()
    other = _run(code, {}, tmp_path / "other").stdout.strip()
    assert len(first) >= 50 and first == second and first != other
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_database_url_switches_database_without_code_change(tmp_path):
    code = (
        "from django.conf import settings;"
        "print(settings.DATABASES['default']['ENGINE'])"
    )
    pg = _run(code, {"DATABASE_URL": "postgres://u@127.0.0.1:5432/x"}, tmp_path)
    assert pg.stdout.strip() == "django.db.backends.postgresql"
    assert _run(code, {}, tmp_path).stdout.strip() == "django.db.backends.sqlite3"


def test_web_process_never_imports_torch(tmp_path):
    code = (
        "import sys; from medrlhf.wsgi import application;"
        "from django.test import Client; import django.urls;"
        "[__import__(m) for m in ('annotations.views', 'annotations.services.imports',"
        " 'models_ml.tasks', 'medrlhf.api_urls')];"
        "django.urls.get_resolver().url_patterns;"
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    result = _run(code, {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"
