"""Attack: a prompt that a spreadsheet runs as a formula when a researcher
opens the generate download's manifest.csv."""

from __future__ import annotations

import csv
import io
import json

import pytest

from models_ml.generate_files import MANIFEST_FIELDS, write_manifests

HOSTILE = ['=HYPERLINK("http://evil","x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1"]


def _row(prompt: str) -> dict:
    row = dict.fromkeys(MANIFEST_FIELDS, "")
    row.update(prompt=prompt, modality="ct", seed=3, model_version_id=1)
    return row


@pytest.mark.parametrize("prompt", HOSTILE)
def test_manifest_csv_cells_never_start_a_formula(prompt):
    table, listing = write_manifests([_row(prompt)])
    (record,) = list(csv.DictReader(io.StringIO(table)))
    assert record["prompt"] == "'" + prompt
    assert json.loads(listing)[0]["prompt"] == prompt  # the JSON keeps it as is


def test_plain_cells_are_unchanged():
    table, _ = write_manifests([_row("CT: normal chest")])
    (record,) = list(csv.DictReader(io.StringIO(table)))
    assert record["prompt"] == "CT: normal chest" and record["seed"] == "3"
