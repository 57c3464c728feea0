"""The one-command runner keeps Django's debug pages to this machine."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from annotations.management.commands.run_embedded import is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("ward-pc.hospital.example", False),
    ],
)
def test_only_loopback_addresses_count_as_this_machine(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_binding_beyond_this_machine_with_debug_on_is_refused_before_anything_starts(
    settings: Any, monkeypatch: pytest.MonkeyPatch
):
    settings.DEBUG = True
    started: list[Any] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))

    with pytest.raises(CommandError, match=r"--host 0\.0\.0\.0: DEBUG is on"):
        call_command("run_embedded", "--host", "0.0.0.0")
    assert started == []


def test_with_debug_off_another_host_passes_the_check_and_starts_the_workers(
    settings: Any, monkeypatch: pytest.MonkeyPatch
):
    settings.DEBUG = False
    argvs: list[list[str]] = []

    def popen(argv: list[str], **kwargs: Any) -> Any:
        argvs.append(argv)
        raise RuntimeError("stop here: the check passed")

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(RuntimeError, match="the check passed"):
        call_command("run_embedded", "--host", "0.0.0.0", "--port", "8100")
    assert len(argvs) == 1
