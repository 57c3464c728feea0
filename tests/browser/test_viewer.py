"""The rating viewer in chromium: window/level on Hounsfield units, presets,
drag, invert, reset, preloading and a physician's own keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from annotations.models import RaterProfile, Rating
from annotations.services.rounds import round_create
from tests.dicom_files import ct_small_hu, import_ct_controls

PROMPT = "CT: axial chest at the level of the carina"


def _ct_round(tmp_path: Path, admin_user: Any, n: int = 1) -> tuple[Any, np.ndarray]:
    """A round of real CT controls (CT_small.dcm, 128 px, HU by rescale),
    shown at their own size; returns the round and the first file's HU."""
    rnd = round_create(
        name="CT controls",
        images=import_ct_controls(tmp_path, n=n, prompt=PROMPT),
        created_by=admin_user,
        open_now=True,
        display_size=128,
    )
    return rnd, ct_small_hu()


def _preloaded(page: Any) -> tuple[str, str]:
    """(the image on screen, the next one) once the next one is decoded."""
    first = page.evaluate("() => document.documentElement.dataset.shownUid")
    upcoming = page.evaluate(
        "() => document.getElementById('rate-form').dataset.nextUid"
    )
    page.wait_for_function(
        "uid => document.documentElement.dataset.nextReady === uid", arg=upcoming
    )
    return first, upcoming


def _open(page: Any, live_server: Any, rnd: Any) -> None:
    page.goto(f"{live_server.url}/rate/{rnd.pk}/")
    page.wait_for_function(
        "() => document.querySelector('[data-image]')?.dataset.shownUid"
    )
    page.wait_for_function("() => document.documentElement.dataset.raterReady === '1'")


def _pixels(page: Any, points: list[tuple[int, int]]) -> list[int]:
    return page.evaluate(
        """points => { const c = document.querySelector('[data-image]');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return points.map(([x, y]) => d[4 * (y * c.width + x)]); }""",
        [list(p) for p in points],
    )


def _window(page: Any) -> tuple[float, float]:
    data = page.evaluate(
        "() => { const c = document.querySelector('[data-image]');"
        " return [Number(c.dataset.center), Number(c.dataset.width)]; }"
    )
    return data[0], data[1]


def _expected(hu: np.ndarray, points, center: float, width: float) -> list[int]:
    low = center - width / 2
    return [
        int(np.clip(round((hu[y, x] - low) * 255 / width), 0, 255)) for x, y in points
    ]


def _points(hu: np.ndarray) -> list[tuple[int, int]]:
    """Pixels spread over the HU range: air, fat/soft tissue, dense."""
    flat = np.argsort(hu, axis=None)
    picks = [flat[int(q * (flat.size - 1))] for q in (0.02, 0.3, 0.6, 0.9, 0.99)]
    return [(int(i % hu.shape[1]), int(i // hu.shape[1])) for i in picks]


def test_window_level_presets_drag_invert_and_reset_on_hounsfield_units(
    page, live_server, login, shot, admin_user, physician, tmp_path
):
    rnd, hu = _ct_round(tmp_path, admin_user)
    login(page, physician)
    _open(page, live_server, rnd)
    points = _points(hu)
    readout = page.locator("[data-readout]")

    page.keyboard.press("l")
    assert _window(page) == (-600.0, 1500.0)
    got, want = _pixels(page, points), _expected(hu, points, -600, 1500)
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1, (got, want)
    assert readout.inner_text().startswith("W 1500 L -600 HU")
    shot(page, "viewer-ct-lung-window")

    page.keyboard.press("b")
    assert _window(page) == (400.0, 1800.0)
    got, want = _pixels(page, points), _expected(hu, points, 400, 1800)
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1, (got, want)
    shot(page, "viewer-ct-bone-window")

    page.get_by_role("button", name="Mediastinum").click()
    mediastinum = _pixels(page, points)
    assert (
        mediastinum == _expected(hu, points, 40, 400)
        or max(
            abs(a - b)
            for a, b in zip(mediastinum, _expected(hu, points, 40, 400), strict=True)
        )
        <= 1
    )

    # Right-drag: to the right widens the window, downwards lowers the level.
    box = page.locator("[data-stage]").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x + 120, y + 80, steps=6)
    page.mouse.up(button="right")
    center, width = _window(page)
    assert width > 400 and center < 40
    got, want = _pixels(page, points), _expected(hu, points, center, width)
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1

    before = _pixels(page, points)
    page.keyboard.press("i")
    assert _pixels(page, points) == [255 - v for v in before]
    assert "inverted" in readout.inner_text()

    page.keyboard.press("r")
    auto = _window(page)
    assert "inverted" not in readout.inner_text()
    assert auto != (center, width)
    page.keyboard.press("a")
    assert _window(page) == auto
    shot(page, "viewer-ct-auto-window")
    assert page.js_errors == []


def test_the_next_image_shows_within_100_ms_of_the_key(
    page, live_server, login, shot, admin_user, physician, tmp_path
):
    rnd, _ = _ct_round(tmp_path, admin_user, n=3)
    login(page, physician)
    _open(page, live_server, rnd)
    first, upcoming = _preloaded(page)
    page.evaluate(
        """() => { window.__swapMs = undefined;
        const before = document.documentElement.dataset.shownUid;
        document.addEventListener('keydown', () => {
          const t0 = performance.now();
          const watch = () => {
            if (document.documentElement.dataset.shownUid !== before) {
              window.__swapMs = performance.now() - t0;
            } else { requestAnimationFrame(watch); }
          };
          watch();
        }, { capture: true, once: true }); }"""
    )
    page.keyboard.press("3")
    page.wait_for_function("() => window.__swapMs !== undefined")
    swap_ms = page.evaluate("() => window.__swapMs")
    assert swap_ms < 100, f"next image took {swap_ms:.0f} ms"
    # The server's answer confirms the same image: no second change.
    page.wait_for_function("() => document.documentElement.dataset.raterReady === '1'")
    assert page.evaluate("() => document.documentElement.dataset.shownUid") == upcoming
    assert page.locator("input[name=image]").input_value() == upcoming
    rating = Rating.objects.get(round=rnd)
    assert (str(rating.image.uid), rating.score) == (first, 3)
    page.keyboard.press("2")
    page.wait_for_function(
        "uid => document.querySelector('input[name=image]')?.value !== uid",
        arg=upcoming,
    )
    second = Rating.objects.get(round=rnd, image__uid=upcoming)
    assert second.time_taken_ms > 0
    assert page.js_errors == []


def test_remapped_numpad_keys_and_auto_advance_off(
    page, live_server, login, shot, admin_user, physician, tmp_path
):
    RaterProfile.objects.update_or_create(
        user=physician,
        defaults={
            "key_map": {
                "score_1": "numpad1",
                "score_2": "numpad2",
                "score_3": "numpad3",
            },
            "auto_advance": False,
        },
    )
    rnd, _ = _ct_round(tmp_path, admin_user, n=2)
    login(page, physician)
    _open(page, live_server, rnd)
    shot(page, "viewer-remapped-keys")
    page.keyboard.press("Numpad2")
    assert page.locator("[data-score-key='2']").get_attribute("aria-pressed") == "true"
    # Selected, not recorded, until the confirm key.
    page.wait_for_timeout(200)
    assert not Rating.objects.exists()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-score-key]')"
        "?.getAttribute('aria-pressed') !== 'true'"
    )
    page.wait_for_function("() => document.documentElement.dataset.raterReady === '1'")
    assert list(Rating.objects.values_list("score", flat=True)) == [2]
    # The old digit key no longer rates.
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert Rating.objects.count() == 1

    page.goto(f"{live_server.url}/rate/keys/")
    page.locator("#id_key_skip").click()
    page.keyboard.press("NumpadDecimal")
    assert page.locator("#id_key_skip").input_value() == "numpaddecimal"
    shot(page, "viewer-keys-page")
    page.get_by_role("button", name="Save keys").click()
    page.get_by_text("Your keys are saved.").wait_for()
    assert RaterProfile.objects.get(user=physician).key_map["skip"] == "numpaddecimal"
    assert page.js_errors == []


def test_an_image_shown_ahead_is_taken_back_when_the_rating_fails(
    page, live_server, login, admin_user, physician, tmp_path
):
    rnd, _ = _ct_round(tmp_path, admin_user, n=2)
    login(page, physician)
    _open(page, live_server, rnd)
    first, upcoming = _preloaded(page)
    page.route("**/submit/", lambda route: route.abort())
    page.keyboard.press("3")
    page.wait_for_function(
        "uid => document.documentElement.dataset.shownUid === uid", arg=first
    )
    page.wait_for_function("() => document.documentElement.dataset.raterReady === '1'")
    assert page.locator("input[name=image]").input_value() == first
    assert page.get_by_test_id("prompt").inner_text() == PROMPT
    assert not Rating.objects.exists()
    page.unroute("**/submit/")
    page.keyboard.press("3")
    page.wait_for_function(
        "uid => document.querySelector('input[name=image]')?.value === uid",
        arg=upcoming,
    )
    assert str(Rating.objects.get().image.uid) == first
