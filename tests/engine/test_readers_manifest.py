"""CSV manifests and label folders, including hostile input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models_ml.engine.readers import (
    ManifestError,
    ReadLimits,
    parse_manifest,
    scan_label_folder,
)


def _tree(tmp_path: Path, *names: str) -> Path:
    for name in names:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    return tmp_path


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _errors(manifest: object) -> dict[int, str]:
    return {error.line: error.message for error in manifest.errors}


def test_seed_format_with_spaces_after_commas_is_accepted(tmp_path: Path) -> None:
    _tree(tmp_path, "image/1.jpg", "image/2.jpg")
    csv_path = _csv(
        tmp_path,
        "path, Text\nimage/1.jpg, breast MRI with tumor\n"
        "image/2.jpg, chest CT without tumor\n",
    )
    manifest = parse_manifest(csv_path)
    assert manifest.ok
    assert [(row.line, row.text) for row in manifest.rows] == [
        (2, "breast MRI with tumor"),
        (3, "chest CT without tumor"),
    ]
    assert manifest.rows[0].path == (tmp_path / "image/1.jpg").resolve()
    assert manifest.rows[0].modality is None


def test_modality_column_is_normalised(tmp_path: Path) -> None:
    _tree(tmp_path, "a.png", "b.png")
    csv_path = _csv(
        tmp_path,
        "PATH,TEXT,Modality\na.png,Chest X-ray: clear,X-Ray\nb.png,OCT: normal,OCT\n",
    )
    assert [row.modality for row in parse_manifest(csv_path).rows] == [
        "chest_xray",
        "oct",
    ]


def test_ratings_export_header_is_accepted(tmp_path: Path) -> None:
    _tree(tmp_path, "gen/1.png")
    csv_path = _csv(
        tmp_path,
        "image_path,rating,modality,expert_level,prompt\n"
        "gen/1.png,3,Brain MRI,senior,Brain MRI: glioma\n",
    )
    (row,) = parse_manifest(csv_path).rows
    assert (row.text, row.modality) == ("Brain MRI: glioma", "brain_mri")


def test_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    _tree(tmp_path, "a.png")
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffpath,Text\na.png,café lesion\n".encode())
    assert parse_manifest(path).rows[0].text == "café lesion"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("/etc/passwd", "absolute"),
        ("C:\\images\\a.png", "absolute"),
        ("../outside.png", "escapes"),
        ("sub/../../outside.png", "escapes"),
        ("https://example.org/a.png", "URL"),
        ("s3://bucket/a.png", "URL"),
        ("missing.png", "not found"),
        ("sub", "not a regular file"),
    ],
)
def test_hostile_paths_are_rejected_naming_the_line(
    tmp_path: Path, row: str, message: str
) -> None:
    root = tmp_path / "root"
    _tree(root, "ok.png", "sub/x.png")
    _tree(tmp_path, "outside.png")
    csv_path = _csv(root, f'path,Text\nok.png,fine\n"{row}",bad\n')
    manifest = parse_manifest(csv_path)
    assert [row.line for row in manifest.rows] == [2]
    assert message in _errors(manifest)[3]
    assert manifest.errors[0].field == "path"


def test_symlinks_anywhere_along_the_path_are_rejected(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _tree(root, "real/a.png")
    _tree(tmp_path, "elsewhere/b.png")
    os.symlink(root / "real/a.png", root / "link.png")
    os.symlink(tmp_path / "elsewhere", root / "linkdir")
    csv_path = _csv(root, "path,Text\nlink.png,one\nlinkdir/b.png,two\nreal/a.png,ok\n")
    manifest = parse_manifest(csv_path)
    assert "symbolic link" in _errors(manifest)[2]
    assert "symbolic link" in _errors(manifest)[3]
    assert [row.line for row in manifest.rows] == [4]


def test_duplicate_rows_keep_the_first_and_name_it(tmp_path: Path) -> None:
    _tree(tmp_path, "a.png")
    csv_path = _csv(
        tmp_path, "path,Text\na.png,same\n./a.png,same\na.png,different text\n"
    )
    manifest = parse_manifest(csv_path)
    assert [row.line for row in manifest.rows] == [2, 4]
    assert _errors(manifest)[3] == "duplicate of line 2 (same path and text)"


def test_empty_text_nul_bytes_and_wrong_column_counts_are_row_errors(
    tmp_path: Path,
) -> None:
    _tree(tmp_path, "a.png", "b.png", "c.png")
    path = tmp_path / "data.csv"
    path.write_bytes(
        b"path,Text\na.png,  \nb.png,bad\x00text\nc.png,one,two\na.png,fine\n"
    )
    manifest = parse_manifest(path)
    errors = _errors(manifest)
    assert errors[2] == "text is empty"
    assert "NUL" in errors[3]
    assert "expected 2 columns, found 3" in errors[4]
    assert [row.line for row in manifest.rows] == [5]


def test_quoted_multiline_text_reports_the_starting_line(tmp_path: Path) -> None:
    _tree(tmp_path, "a.png")
    csv_path = _csv(tmp_path, 'path,Text\n"a.png","two\nlines"\n"",x\n')
    manifest = parse_manifest(csv_path)
    assert manifest.rows[0].text == "two\nlines"
    assert _errors(manifest)[4] == "path is empty"


def test_non_utf8_csv_names_the_byte_offset(tmp_path: Path) -> None:
    _tree(tmp_path, "a.png")
    path = tmp_path / "latin.csv"
    path.write_bytes("path,Text\na.png,lésion\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"latin.csv.*offset 17 \(line 2\)"):
        parse_manifest(path)
    assert parse_manifest(path, encoding="latin-1").rows[0].text == "lésion"


def test_missing_header_is_rejected_naming_the_file(tmp_path: Path) -> None:
    csv_path = _csv(tmp_path, "file,caption\na.png,x\n", name="nohdr.csv")
    with pytest.raises(ManifestError, match="nohdr.csv.*header must name"):
        parse_manifest(csv_path)


@pytest.mark.parametrize("content", ["", "\n\n", "path,Text\n", "path,Text\n , \n"])
def test_empty_csv_is_rejected_with_no_rows(tmp_path: Path, content: str) -> None:
    with pytest.raises(ManifestError, match="no rows"):
        parse_manifest(_csv(tmp_path, content))


def test_too_many_rows_or_bytes_are_rejected(tmp_path: Path) -> None:
    _tree(tmp_path, "a.png")
    rows = "".join(f"a.png,text {i}\n" for i in range(5))
    csv_path = _csv(tmp_path, "path,Text\n" + rows)
    with pytest.raises(ManifestError, match="more than 3 rows"):
        parse_manifest(csv_path, limits=ReadLimits(max_csv_rows=3))
    with pytest.raises(ManifestError, match="bytes"):
        parse_manifest(csv_path, limits=ReadLimits(max_csv_bytes=20))


def test_label_folder_takes_labels_from_file_names(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        "round1/normal_001.png",
        "round1/sub/acute-leukemia_17.png",
        "blast_cell_3.jpg",
        ".hidden_1.png",
        "notes.txt",
        "nolabel.png",
    )
    manifest = scan_label_folder(tmp_path, modality="Fundus")
    texts = sorted(row.text for row in manifest.rows)
    assert texts == ["acute leukemia", "blast", "normal"]
    assert {row.modality for row in manifest.rows} == {"fundus"}
    assert len(manifest.errors) == 1 and "nolabel.png" in manifest.errors[0].message


def test_label_folder_refuses_symlinks_and_too_many_files(tmp_path: Path) -> None:
    _tree(tmp_path, "a_1.png", "b_2.png", "c_3.png")
    os.symlink(tmp_path / "a_1.png", tmp_path / "d_4.png")
    manifest = scan_label_folder(tmp_path)
    assert len(manifest.rows) == 3
    assert "symbolic links" in manifest.errors[0].message
    with pytest.raises(ManifestError, match="more than 2 images"):
        scan_label_folder(tmp_path, limits=ReadLimits(max_csv_rows=2))


def test_absolute_paths_are_refused_unless_the_caller_allows_them(tmp_path):
    from PIL import Image

    from models_ml.engine.readers import parse_manifest

    image = tmp_path / "elsewhere" / "a.png"
    image.parent.mkdir()
    Image.new("L", (8, 8)).save(image)
    link = tmp_path / "link.png"
    link.symlink_to(image)
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "data.csv").write_text(f"path,Text\n{image},CT: a\n{link},CT: b\n")
    strict = parse_manifest(csv_dir / "data.csv")
    assert [e.line for e in strict.errors] == [2, 3]
    assert "absolute paths are not allowed" in strict.errors[0].message
    loose = parse_manifest(csv_dir / "data.csv", allow_absolute=True)
    assert [r.path for r in loose.rows] == [image.resolve()]
    assert [e.line for e in loose.errors] == [3]
    assert "symbolic links" in loose.errors[0].message
