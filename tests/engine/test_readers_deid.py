"""De-identification of real DICOM files with planted identifiers."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from models_ml.engine.readers import (
    UidMap,
    deidentify,
    encode_png,
    encode_preview_png,
    kept_header,
    read_image_file,
)

PLANTED = [
    "Doe^Jane",
    "MRN-771234",
    "St Elsewhere General",
    "Dr^Referrer",
    "Dr^Performer",
    "Tech^Operator",
    "ACC-99887",
    "19710304",
    "20240115",
    "101 Harbour Road",
    "secret vendor note",
    "nested comment text",
    "Dr^Nested",
]


def _planted_dataset() -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-771234"
    ds.PatientBirthDate = "19710304"
    ds.PatientAddress = "101 Harbour Road"
    ds.InstitutionName = "St Elsewhere General"
    ds.ReferringPhysicianName = "Dr^Referrer"
    ds.PerformingPhysicianName = "Dr^Performer"
    ds.OperatorsName = "Tech^Operator"
    ds.AccessionNumber = "ACC-99887"
    ds.StudyDate = "20240115"
    ds.ImageComments = "nested comment text"
    block = ds.private_block(0x0041, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "secret vendor note")
    item = Dataset()
    item.CodeValue = "CT-CHEST"
    item.CodingSchemeDesignator = "L"
    item.CodeMeaning = "chest"
    item.ScheduledPerformingPhysicianName = "Dr^Nested"
    item.add_new(0x00430010, "LO", "ACME 1.0")
    item.add_new(0x00431001, "LO", "secret vendor note")
    ds.ProcedureCodeSequence = Sequence([item])
    return ds


def _all_text(ds: Dataset) -> str:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue().decode("latin-1") + str(ds)


def test_planted_identifiers_do_not_survive_deidentification() -> None:
    ds = _planted_dataset()
    assert all(value in _all_text(ds) for value in PLANTED)
    result = deidentify(ds, uid_map=UidMap("salt"))
    text = _all_text(result.dataset)
    for value in PLANTED:
        assert value not in text, value
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert ds.PatientIdentityRemoved == "YES"
    assert "PS3.15" in ds.DeidentificationMethod
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert ds.ProcedureCodeSequence[0].CodeMeaning == "chest"


def test_patient_id_becomes_a_stable_pseudonym() -> None:
    first = deidentify(_planted_dataset(), uid_map=UidMap("salt")).dataset
    second = deidentify(_planted_dataset(), uid_map=UidMap("salt")).dataset
    assert first.PatientID == second.PatientID
    assert first.PatientID.startswith("ANON-")


def test_kept_header_holds_only_safe_fields() -> None:
    ds = _planted_dataset()
    deidentify(ds, uid_map=UidMap("salt"))
    header = kept_header(ds)
    assert header["Modality"] == "CT"
    assert header["Rows"] == 128 and header["Columns"] == 128
    assert header["TransferSyntax"] == "Explicit VR Little Endian"
    flat = repr(header)
    assert not any(value in flat for value in PLANTED)


def test_encoded_pngs_carry_no_header_text(tmp_path: Path) -> None:
    ds = _planted_dataset()
    path = tmp_path / "planted.dcm"
    ds.save_as(path, enforce_file_format=True)
    (image,) = read_image_file(path)
    assert not any(value in repr(image.metadata) for value in PLANTED)
    for blob in (encode_png(image), encode_preview_png(image)):
        text = blob.decode("latin-1")
        assert not any(value in text for value in PLANTED)
        assert b"tEXt" not in blob and b"iTXt" not in blob and b"eXIf" not in blob


def test_uids_are_remapped_consistently_across_files_of_one_study() -> None:
    first, second = _planted_dataset(), _planted_dataset()
    second.SOPInstanceUID = first.SOPInstanceUID + ".2"
    second.file_meta.MediaStorageSOPInstanceUID = second.SOPInstanceUID
    study, sop_class = first.StudyInstanceUID, first.SOPClassUID
    uid_map = UidMap("import-42")
    deidentify(first, uid_map=uid_map)
    deidentify(second, uid_map=uid_map)
    assert first.StudyInstanceUID == second.StudyInstanceUID != study
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert first.SOPClassUID == sop_class
    assert first.StudyInstanceUID.startswith("2.25.")
    assert len(first.StudyInstanceUID) <= 64


def test_uid_mapping_depends_on_the_salt() -> None:
    uid = "1.2.3.4.5.6"
    assert UidMap("a").remap(uid) == UidMap("a").remap(uid)
    assert UidMap("a").remap(uid) != UidMap("b").remap(uid)


def test_burned_in_annotation_is_flagged(tmp_path: Path) -> None:
    ds = _planted_dataset()
    ds.BurnedInAnnotation = "YES"
    path = tmp_path / "burned.dcm"
    ds.save_as(path, enforce_file_format=True)
    (image,) = read_image_file(path)
    assert image.burned_in_annotation is True
    assert deidentify(ds, uid_map=UidMap("s")).burned_in_annotation is True
    (clean,) = read_image_file(get_testdata_file("CT_small.dcm"))
    assert clean.burned_in_annotation is False
