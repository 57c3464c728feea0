"""Receiving dataset archives from the browser or the API, safely."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from ..errors import DomainError
from ..users import User

MAX_ZIP_ENTRIES = 200_000
MAX_COMPRESSION_RATIO = 200
CHUNK = 1024 * 1024


class UploadRejected(DomainError):
    pass


def _safe_member_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if (
        not path.parts
        or path.is_absolute()
        or ".." in path.parts
        or ":" in path.parts[0]
    ):
        raise UploadRejected(f"archive entry {name!r} points outside the archive")
    return path


def _make_dirs(path: Path, entry: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # a file where the entry needs a folder
        raise UploadRejected(
            f"archive entry {entry!r} clashes with another entry ({exc.strerror})"
        ) from exc


def _extract_zip(archive: Path, dest: Path, *, max_bytes: int) -> int:
    """Extract with limits on entries, total size and compression ratio."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise UploadRejected(
            f"{archive.name}: not a readable zip archive ({exc})"
        ) from exc
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_ENTRIES:
            raise UploadRejected(f"{archive.name}: more than {MAX_ZIP_ENTRIES} entries")
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise UploadRejected(
                f"{archive.name}: unpacks to {declared} bytes, "
                f"over the limit of {max_bytes}"
            )
        total = 0
        seen: set[PurePosixPath] = set()
        for member in members:
            rel = _safe_member_path(member.filename)
            if rel in seen and not member.is_dir():
                raise UploadRejected(
                    f"{archive.name}: entry {member.filename!r} appears more than "
                    "once; which copy to import is ambiguous"
                )
            seen.add(rel)
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UploadRejected(f"archive entry {member.filename!r} is a symlink")
            if member.is_dir():
                _make_dirs(dest / rel, member.filename)
                continue
            if member.compress_size and member.file_size / member.compress_size > (
                MAX_COMPRESSION_RATIO
            ):
                raise UploadRejected(
                    f"archive entry {member.filename!r} compresses suspiciously well "
                    "(possible zip bomb)"
                )
            target = dest / rel
            _make_dirs(target.parent, member.filename)
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:  # a folder of that name, or already there
                raise UploadRejected(
                    f"archive entry {member.filename!r} clashes with another entry "
                    f"({exc.strerror})"
                ) from exc
            with zf.open(member) as src, os.fdopen(fd, "wb") as out:
                written = 0
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    # The declared sizes can lie; count what really comes out.
                    if written > member.file_size or total > max_bytes:
                        raise UploadRejected(
                            f"archive entry {member.filename!r} is larger than declared"
                        )
                    out.write(chunk)
        return total


def upload_stage(*, uploaded_file: Any, created_by: User | None) -> Path:
    """Save an uploaded .zip (CSV plus images, or a label_xxx folder) for import.

    Returns the folder it was unpacked to; nothing is left behind on error.
    """
    name = Path(getattr(uploaded_file, "name", "") or "upload").name
    if not name.lower().endswith(".zip"):
        raise UploadRejected(
            f"{name}: upload a .zip holding the CSV and its images (or a folder of "
            "label_xxx.png images)"
        )
    size = getattr(uploaded_file, "size", None)
    if size is not None and size > settings.MAX_UPLOAD_BYTES:
        raise UploadRejected(f"{name}: {size} bytes is over the upload limit")
    root = Path(settings.UPLOAD_STAGING_DIR)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = root / uuid.uuid4().hex
    # Originals may carry PHI until the import has de-identified them:
    # only the server's user may read them, and they go when the job ends.
    staging.mkdir(mode=0o700)
    archive = staging.with_suffix(".zip")
    try:
        fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in uploaded_file.chunks():
                out.write(chunk)
        _extract_zip(archive, staging, max_bytes=settings.MAX_UPLOAD_BYTES * 4)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        archive.unlink(missing_ok=True)
    return staging


def is_staged_upload(source: Path | str) -> bool:
    """Whether ``source`` lies in a folder ``upload_stage`` made."""
    root = Path(settings.UPLOAD_STAGING_DIR).resolve()
    path = Path(source).resolve()
    return path != root and root in path.parents


def upload_discard(source: Path | str) -> None:
    """Delete the staged upload ``source`` belongs to (its original files,
    PHI included); a source outside the staging folder is left alone."""
    if not is_staged_upload(source):
        return
    root = Path(settings.UPLOAD_STAGING_DIR).resolve()
    path = Path(source).resolve()
    staged = root / path.relative_to(root).parts[0]
    shutil.rmtree(staged, ignore_errors=True)
