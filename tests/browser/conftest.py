"""Playwright driving Debian's chromium against pytest-django's live server."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls made by
# the tests themselves are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
]
SHOTS = Path(os.environ.get("MEDRLHF_SHOTS", "/tmp/medrlhf-shots"))
PASSWORD = "correct horse battery"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(autouse=True)
def _browser_db(transactional_db: Any, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        accept_downloads=True, viewport={"width": 1440, "height": 900}
    )
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.js_errors = errors
    yield opened
    context.close()


@pytest.fixture
def login(live_server: Any) -> Callable[[Any, Any], None]:
    def do(page: Any, user: Any) -> None:
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", user.get_username())
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")

    return do


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return take


def medical_png(kind: str = "fundus", size: int = 768) -> bytes:
    """A real-looking display image: skimage's fundus photo or CT phantom."""
    import numpy as np
    from PIL import Image as PILImage
    from skimage import data

    if kind == "fundus":
        pixels = data.retina()
        mode = "RGB"
    else:
        pixels = (data.shepp_logan_phantom() * 255).astype(np.uint8)
        mode = "L"
    image = PILImage.fromarray(pixels, mode=mode).resize((size, size))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
