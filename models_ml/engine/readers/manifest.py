"""CSV manifests (``path,Text[,modality]``) and ``label_xxx.png`` folders.

Every row is checked on its own: a bad row becomes a ``RowError`` naming its
line and the rest of the file still imports. Problems with the file as a whole
(unreadable, wrong header, empty, too big) raise ``ManifestError``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from models_ml.engine.readers.errors import InvalidModalityError, ManifestError
from models_ml.engine.readers.limits import DEFAULT_LIMITS, ReadLimits
from models_ml.engine.readers.modality import normalize_modality

_PATH_COLUMNS = ("path", "image_path")
_TEXT_COLUMNS = ("text", "prompt")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".nii", ".nii.gz")


@dataclass(frozen=True)
class ManifestRow:
    """One usable image/text pair; ``path`` is resolved and inside the root."""

    line: int
    path: Path
    text: str
    modality: str | None = None


@dataclass(frozen=True)
class RowError:
    """Why one row (or one file of a folder) was rejected."""

    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "folder"
        return f"{where}{f' ({self.field})' if self.field else ''}: {self.message}"


@dataclass
class Manifest:
    """Accepted rows plus per-row errors of one CSV file or folder."""

    source: Path
    rows: list[ManifestRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _decode(csv_path: Path, data: bytes, encoding: str | None) -> str:
    if encoding is not None:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ManifestError(
                csv_path, f"cannot decode as {encoding}: {exc}"
            ) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ManifestError(
            csv_path,
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"(line {line}); save the file as UTF-8 or pass encoding='latin-1'",
        ) from exc


def _columns(csv_path: Path, header: list[str]) -> tuple[int, int, int | None]:
    names = [name.strip().lower() for name in header]

    def find(options: tuple[str, ...]) -> int | None:
        for option in options:
            if option in names:
                return names.index(option)
        return None

    path_col, text_col = find(_PATH_COLUMNS), find(_TEXT_COLUMNS)
    if path_col is None or text_col is None:
        raise ManifestError(
            csv_path,
            "header must name a path column (path or image_path) and a text "
            f"column (Text or prompt); found {', '.join(header) or 'nothing'}",
        )
    return path_col, text_col, find(("modality",))


def check_relative_path(root: Path, raw: str) -> tuple[Path | None, str | None]:
    """Resolve ``raw`` under ``root`` or say why it is refused."""
    if not raw:
        return None, "path is empty"
    if "\x00" in raw:
        return None, "path contains a NUL byte"
    if _URL.match(raw) or raw.lower().startswith(("file:", "data:")):
        return None, f"URLs are not allowed ({raw!r}); give a path relative to the CSV"
    windows = PureWindowsPath(raw)
    if raw.startswith(("/", "\\")) or windows.drive or windows.is_absolute():
        return None, f"absolute paths are not allowed ({raw!r})"
    parts = PurePosixPath(raw.replace("\\", "/")).parts
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return None, f"path {raw!r} escapes the CSV folder"
    current = root
    for part in parts:
        if part in (".", ""):
            continue
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return None, f"file not found: {raw}"
        except OSError as exc:
            return None, f"cannot access {raw}: {exc.strerror}"
        if stat.S_ISLNK(info.st_mode):
            return None, f"symbolic links are not allowed ({raw})"
    if not stat.S_ISREG(os.lstat(current).st_mode):
        return None, f"not a regular file: {raw}"
    resolved = current.resolve()
    if not resolved.is_relative_to(root.resolve()):
        return None, f"path {raw!r} escapes the CSV folder"
    return resolved, None


def check_absolute_path(raw: str) -> tuple[Path | None, str | None]:
    """An absolute path to a regular file that is not itself a symlink."""
    path = Path(raw)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, f"file not found: {raw}"
    except OSError as exc:
        return None, f"cannot access {raw}: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return None, f"symbolic links are not allowed ({raw})"
    if not stat.S_ISREG(info.st_mode):
        return None, f"not a regular file: {raw}"
    return path.resolve(), None


def parse_manifest(
    csv_path: str | Path,
    *,
    limits: ReadLimits = DEFAULT_LIMITS,
    encoding: str | None = None,
    allow_absolute: bool = False,
) -> Manifest:
    """Read an import CSV whose paths are relative to the CSV's folder.

    Accepts ``path,Text``, ``path,Text,modality`` (any case, spaces after
    commas) and the ratings export (``image_path,...,prompt,modality``).
    UTF-8 (with or without BOM) unless ``encoding`` says otherwise.
    ``allow_absolute`` also accepts absolute paths: for the engine, reading a
    user's own files or the platform's exports, never for uploaded CSVs.
    """
    csv_path = Path(csv_path)
    try:
        info = csv_path.stat()
    except OSError as exc:
        raise ManifestError(csv_path, f"cannot open CSV: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ManifestError(csv_path, "CSV is not a regular file")
    if info.st_size > limits.max_csv_bytes:
        raise ManifestError(
            csv_path, f"CSV is {info.st_size} bytes, more than {limits.max_csv_bytes}"
        )
    text = _decode(csv_path, csv_path.read_bytes(), encoding)
    root = csv_path.parent
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    manifest = Manifest(source=csv_path)
    header: list[str] | None = None
    columns: tuple[int, int, int | None] = (0, 0, None)
    seen: dict[tuple[Path, str], int] = {}
    count = 0
    line = 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = record
                columns = _columns(csv_path, header)
                continue
            count += 1
            if count > limits.max_csv_rows:
                raise ManifestError(
                    csv_path, f"CSV has more than {limits.max_csv_rows} rows"
                )
            _parse_row(
                manifest,
                root,
                record,
                start,
                columns,
                len(header),
                seen,
                limits,
                allow_absolute,
            )
    except csv.Error as exc:
        raise ManifestError(
            csv_path, f"CSV syntax error near line {line}: {exc}"
        ) from exc
    if header is None or count == 0:
        raise ManifestError(csv_path, "no rows: the CSV has no data under its header")
    return manifest


def _parse_row(
    manifest: Manifest,
    root: Path,
    record: list[str],
    line: int,
    columns: tuple[int, int, int | None],
    width: int,
    seen: dict[tuple[Path, str], int],
    limits: ReadLimits,
    allow_absolute: bool = False,
) -> None:
    path_col, text_col, modality_col = columns
    if len(record) != width:
        manifest.errors.append(
            RowError(
                line,
                None,
                f"expected {width} columns, found {len(record)} "
                "(quote text that contains commas)",
            )
        )
        return
    cells = [cell.strip() for cell in record]
    if any("\x00" in cell for cell in cells):
        manifest.errors.append(RowError(line, None, "row contains a NUL byte"))
        return
    text = cells[text_col]
    if not text:
        manifest.errors.append(RowError(line, "text", "text is empty"))
        return
    if len(text) > limits.max_text_chars:
        manifest.errors.append(
            RowError(line, "text", f"text is longer than {limits.max_text_chars}")
        )
        return
    modality = None
    if modality_col is not None and cells[modality_col]:
        try:
            modality = normalize_modality(cells[modality_col])
        except InvalidModalityError as exc:
            manifest.errors.append(RowError(line, "modality", str(exc)))
            return
    raw = cells[path_col]
    if allow_absolute and raw.startswith("/") and "\x00" not in raw:
        resolved, problem = check_absolute_path(raw)
    else:
        resolved, problem = check_relative_path(root, raw)
    if problem is not None or resolved is None:
        manifest.errors.append(RowError(line, "path", problem or "invalid path"))
        return
    key = (resolved, text)
    if key in seen:
        manifest.errors.append(
            RowError(line, None, f"duplicate of line {seen[key]} (same path and text)")
        )
        return
    seen[key] = line
    manifest.rows.append(ManifestRow(line, resolved, text, modality))


def _label_of(name: str) -> str | None:
    stem, sep, _ = name.partition("_")
    if not sep:
        return None
    label = re.sub(r"[\s_-]+", " ", stem).strip()
    return label or None


def scan_label_folder(
    folder: str | Path,
    *,
    modality: str | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> Manifest:
    """List ``label_xxx.<image>`` files under ``folder`` (recursively).

    The label is the file name up to its first underscore, hyphens turned into
    spaces; folder names play no part. Symbolic links are refused.
    """
    folder = Path(folder)
    try:
        info = os.lstat(folder)
    except OSError as exc:
        raise ManifestError(folder, f"cannot open folder: {exc.strerror}") from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ManifestError(folder, "not a folder (symbolic links are refused)")
    slug = normalize_modality(modality) if modality else None
    manifest = Manifest(source=folder)
    files: list[tuple[str, Path]] = []
    _walk(folder, folder, 0, files, manifest, limits)
    for number, (relative, path) in enumerate(sorted(files), start=1):
        label = _label_of(path.name)
        if label is None:
            manifest.errors.append(
                RowError(0, "path", f"{relative}: name has no 'label_' prefix")
            )
            continue
        manifest.rows.append(ManifestRow(number, path.resolve(), label, slug))
    if not manifest.rows and not manifest.errors:
        raise ManifestError(folder, "no rows: the folder holds no image files")
    return manifest


def _walk(
    root: Path,
    current: Path,
    depth: int,
    files: list[tuple[str, Path]],
    manifest: Manifest,
    limits: ReadLimits,
) -> None:
    if depth > limits.max_folder_depth:
        raise ManifestError(root, f"folders nest deeper than {limits.max_folder_depth}")
    with os.scandir(current) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            relative = str(Path(entry.path).relative_to(root))
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                manifest.errors.append(
                    RowError(0, "path", f"{relative}: symbolic links are not allowed")
                )
            elif entry.is_dir(follow_symlinks=False):
                _walk(root, Path(entry.path), depth + 1, files, manifest, limits)
            elif entry.is_file(follow_symlinks=False) and entry.name.lower().endswith(
                IMAGE_SUFFIXES
            ):
                files.append((relative, Path(entry.path)))
                if len(files) > limits.max_csv_rows:
                    raise ManifestError(
                        root, f"folder holds more than {limits.max_csv_rows} images"
                    )
