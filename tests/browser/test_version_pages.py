"""Sample grids on the lineage and version pages, and a comparison round's
arms side by side, in chromium."""

from __future__ import annotations

from django.core.files.base import ContentFile

from annotations.models import Image
from models_ml.samples import version_samples_make
from tests.factories import DatasetFactory, ImageFactory
from tests.models_ml.test_gate import comparison_round
from tests.models_ml.test_samples import _demo_version

from .conftest import medical_png

LOADED = (
    "sel => { const imgs = [...document.querySelectorAll(sel)];"
    " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"
)


def test_lineage_and_version_pages_show_sample_grids(
    page, live_server, login, shot, admin_user, settings
):
    settings.MODEL_SAMPLE_PROMPTS = 3
    dataset = DatasetFactory(name="Demo")
    for modality, prompt in (
        ("fundus", "Fundus photograph: optic disc and macula"),
        ("ct", "CT: axial chest at the level of the carina"),
        ("chest_xray", "Chest X-ray: frontal, no consolidation"),
    ):
        ImageFactory(dataset=dataset, modality=modality, prompt=prompt)
    parent = _demo_version("demo base", dataset=dataset)
    child = _demo_version("demo base: round 1", parent=parent)
    version_samples_make(parent, per_prompt=4)
    version_samples_make(child, per_prompt=4)
    login(page, admin_user)
    page.goto(f"{live_server.url}/models/lineage/")
    page.wait_for_function(LOADED, arg="[data-testid^=samples-] img")
    assert page.locator(f"[data-testid=samples-{parent.pk}] img").count() == 3
    assert page.locator(f"[data-testid=samples-{child.pk}] img").count() == 3
    shot(page, "lineage-sample-grids")
    page.get_by_role("link", name="demo base: round 1").click()
    page.wait_for_function(LOADED, arg="[data-testid=version-samples] img")
    box = page.locator("[data-testid=version-samples] img").first.bounding_box()
    assert box["height"] >= 90
    shot(page, "version-page-samples")
    assert page.js_errors == []


def test_the_comparison_results_show_the_arms_side_by_side(
    page, live_server, login, shot, admin_user
):
    comparison = comparison_round(
        admin_user,
        outcomes={
            "candidate": [3, 3, 2, 3, 3, 3, 3, 2],
            "parent": [1, 2, 1, 2, 2, 1, 2, 3],
            "control": [2, 2, 1, 2, 3, 2, 2, 2],
        },
    )
    for i, image in enumerate(
        Image.objects.filter(generated_for_round=comparison.round)
    ):
        kind = "phantom" if i % 3 else "fundus"
        image.preview.save("preview.png", ContentFile(medical_png(kind, 96)))
    login(page, admin_user)
    page.goto(f"{live_server.url}/models/versions/{comparison.candidate_id}/")
    grid = page.get_by_test_id(f"arm-grid-{comparison.pk}")
    assert grid.get_attribute("open") is not None
    page.wait_for_function(LOADED, arg=f"[data-testid=arm-grid-{comparison.pk}] img")
    labels = grid.locator(".arm-row").first.locator("figcaption").all_inner_texts()
    assert labels == ["New version", "Parent", "Control (same fine-tune, no feedback)"]
    assert grid.locator(".arm-row").count() == 2
    grid.scroll_into_view_if_needed()
    shot(page, "comparison-arms-side-by-side")
    page.goto(f"{live_server.url}/models/dashboard/")
    dashboard_grid = page.get_by_test_id(f"arm-grid-{comparison.pk}")
    assert dashboard_grid.get_attribute("open") is None
    dashboard_grid.locator("summary").click()
    page.wait_for_function(LOADED, arg=f"[data-testid=arm-grid-{comparison.pk}] img")
    assert page.js_errors == []
