"""Receiving dataset archives from the browser or the API, safely."""

from __future__ import annotations

import shutil
import stat
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from ..errors import DomainError

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
                f"{archive.name}: unpacks to {declared} bytes, over the limit of {max_bytes}"
            )
        total = 0
        for member in members:
            rel = _safe_member_path(member.filename)
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UploadRejected(f"archive entry {member.filename!r} is a symlink")
            if member.is_dir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            if member.compress_size and member.file_size / member.compress_size > (
                MAX_COMPRESSION_RATIO
            ):
                raise UploadRejected(
                    f"archive entry {member.filename!r} compresses suspiciously well "
                    "(possible zip bomb)"
                )
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "xb") as out:
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


def upload_stage(*, uploaded_file: Any, created_by: Any) -> Path:
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
    staging = Path(settings.UPLOAD_STAGING_DIR) / uuid.uuid4().hex
    staging.mkdir(parents=True)
    archive = staging.with_suffix(".zip")
    try:
        with open(archive, "xb") as out:
            for chunk in uploaded_file.chunks():
                out.write(chunk)
        _extract_zip(archive, staging, max_bytes=settings.MAX_UPLOAD_BYTES * 4)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        archive.unlink(missing_ok=True)
    return staging
