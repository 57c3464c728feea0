"""The rating page's keys: what each action is bound to, and a physician's own.

A key is named as the browser names it, lowercased: a printable character
("1", "s", "+"), a named key ("enter", "space", "arrowleft", "f2"), or a
numeric-keypad key by its position ("numpad1", "numpadenter", "numpadadd"),
which works whether Num Lock is on or off. Each action has one key and no
two actions share one. A physician's choices are stored on their profile
(``RaterProfile.key_map``) and follow them to every machine.
"""

from __future__ import annotations

import re
from typing import Any

from .users import AnyUser

ACTIONS: dict[str, tuple[str, str]] = {
    "score_1": ("Score 1 (Poor)", "1"),
    "score_2": ("Score 2 (Acceptable)", "2"),
    "score_3": ("Score 3 (Excellent)", "3"),
    "confirm": ("Record the selected score (when auto-advance is off)", "enter"),
    "skip": ("Skip", "s"),
    "undo": ("Undo last rating", "u"),
    "auto_window": ("Automatic window from the image", "a"),
    "preset_lung": ("CT lung window (-600/1500)", "l"),
    "preset_mediastinum": ("CT mediastinum window (40/400)", "m"),
    "preset_bone": ("CT bone window (400/1800)", "b"),
    "preset_brain": ("CT brain window (40/80)", "n"),
    "invert": ("Invert", "i"),
    "reset": ("Reset window, zoom and pan", "r"),
    "zoom_in": ("Zoom in", "+"),
    "zoom_out": ("Zoom out", "-"),
    "fit": ("Fit to screen", "0"),
}

_NAMED = (
    "enter|space|tab|backspace|delete|insert|home|end|pageup|pagedown|"
    "arrowleft|arrowright|arrowup|arrowdown|f[1-9]|f1[0-2]|"
    "numpad[0-9]|numpadenter|numpadadd|numpadsubtract|numpadmultiply|"
    "numpaddivide|numpaddecimal"
)
_KEY = re.compile(rf"^(?:[a-z0-9]|[-=+,./;'\[\]\\`*]|{_NAMED})$")
RESERVED = frozenset({"escape", "tab"})
"""Keys a physician may not bind: they leave fields and dialogs."""


class KeyMapError(ValueError):
    """A key map that names an unknown action or key, or binds a key twice."""


def normalize_key(raw: Any, *, action: str) -> str:
    if not isinstance(raw, str):
        raise KeyMapError(f"{action}: a key must be text")
    key = "space" if raw == " " else raw.strip().lower()
    if key in RESERVED or not _KEY.match(key):
        raise KeyMapError(
            f"{action}: {raw!r} is not a key the rating page can use (a letter, "
            "digit or sign, enter, space, an arrow, f1-f12 or numpad0-numpad9)"
        )
    return key


def key_map_clean(overrides: Any) -> dict[str, str]:
    """The physician's overrides, checked: known actions, usable keys, and no
    key bound twice once the defaults fill in the rest. Returns only the
    overrides that differ from the default."""
    if not isinstance(overrides, dict):
        raise KeyMapError("the key map must be an object of action: key")
    cleaned: dict[str, str] = {}
    for action, raw in overrides.items():
        if action not in ACTIONS:
            raise KeyMapError(f"unknown action {action!r}")
        key = normalize_key(raw, action=action)
        if key != ACTIONS[action][1]:
            cleaned[action] = key
    bound: dict[str, str] = {}
    for action, key in key_map_full(cleaned).items():
        if key in bound:
            raise KeyMapError(
                f"{key!r} is bound to both {ACTIONS[bound[key]][0].lower()} "
                f"and {ACTIONS[action][0].lower()}"
            )
        bound[key] = action
    return cleaned


def key_map_full(overrides: dict[str, str] | None) -> dict[str, str]:
    """Every action's key: the overrides over the defaults."""
    overrides = overrides or {}
    return {
        action: overrides.get(action, default)
        for action, (_, default) in ACTIONS.items()
    }


def keys_for(user: AnyUser) -> tuple[dict[str, str], bool]:
    """(every action's key, auto-advance) for ``user``; defaults without a
    profile or with a stored map that no longer checks."""
    profile = getattr(user, "rater_profile", None)
    if profile is None:
        return key_map_full(None), True
    try:
        overrides = key_map_clean(profile.key_map)
    except KeyMapError:
        overrides = {}
    return key_map_full(overrides), bool(profile.auto_advance)
