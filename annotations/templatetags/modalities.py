"""``{{ image.modality|modality_label }}``: "Chest X-ray", not ``chest_xray``."""

from __future__ import annotations

from django import template

from models_ml.engine.readers import modality_label as _label

register = template.Library()


@register.filter
def modality_label(slug: str) -> str:
    return _label(slug) if slug else ""
