"""Attack: another account on the server reads the SQLite file (API tokens),
the secret key, images or models because they were world-readable.

A fresh install made by the product's own commands keeps ``var/`` at 0700
and everything it writes there private to the server's user.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _manage(var: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MEDRLHF_VAR_DIR": str(var),
        "MEDRLHF_ENV": "development",
        "DJANGO_SETTINGS_MODULE": "medrlhf.settings",
        **extra,
    }
    env.pop("DATABASE_URL", None)
    env.pop("MEDIA_ROOT", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _group_or_world_access(var: Path) -> list[str]:
    loose = []
    for path in [var, *var.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077 and not path.is_symlink():
            loose.append(f"{path.relative_to(var.parent)} {oct(mode)}")
    return loose


def test_a_fresh_install_writes_nothing_others_can_read(tmp_path):
    var = tmp_path / "var"
    # A loose umask in the shell that starts it does not matter.
    old = os.umask(0o022)
    try:
        done = _manage(var, "migrate", "--noinput", "-v0")
        assert done.returncode == 0, done.stderr[-2000:]
        store = _manage(
            var,
            "shell",
            "-c",
            "from django.core.files.storage import default_storage as s;"
            "from django.core.files.base import ContentFile;"
            "s.save('images/a/b.png', ContentFile(b'x'))",
        )
        assert store.returncode == 0, store.stderr[-2000:]
    finally:
        os.umask(old)
    assert (var / "medrlhf.sqlite3").exists() and (var / "secret_key").exists()
    assert (var / "media" / "images" / "a" / "b.png").exists()
    assert _group_or_world_access(var) == []


def test_an_older_install_gets_its_var_folder_closed(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    done = _manage(var, "check")
    assert done.returncode == 0, done.stderr[-2000:]
    assert stat.S_IMODE(var.stat().st_mode) == 0o700


@pytest.mark.parametrize("mask", ["0022", "banana", "1777"])
def test_a_umask_that_shows_files_to_others_is_refused(tmp_path, mask):
    done = _manage(tmp_path / "var", "check", MEDRLHF_UMASK=mask)
    assert done.returncode != 0
    assert "MEDRLHF_UMASK must be an octal mask" in done.stderr
