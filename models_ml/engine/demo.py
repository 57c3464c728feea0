"""Demo dataset built from real medical images that ship inside installed packages.

Nothing is downloaded: every picture comes from a file already on disk in
scikit-image, pydicom, pydicom-data (import name ``data_store``) or nibabel.
Surveyed and used:

Fundus (RGB)
    skimage ``data/retina.jpg``: colour fundus photograph of a normal left eye
    (Wikimedia, CC0); used whole, centred on the optic disc and on the macula.
Histopathology (RGB)
    skimage ``data/ihc.png``: colonic glands, immunohistochemistry for FHL2
    revealed with DAB, hematoxylin counterstain.
CT
    pydicom-data ``693_UNCR.dcm``: axial non-contrast head CT through the
    cerebral hemispheres (a CQ500 case), in brain and in bone window;
    pydicom ``J2K_pixelrep_mismatch.dcm``: axial head CT at the skull base;
    pydicom-data ``explicit_VR-UN.dcm``: axial contrast-enhanced upper-abdomen
    CT at the pancreas and kidneys (Pancreas-CT); pydicom-data
    ``bad_sequence.dcm``: small field-of-view axial CT of a vertebra.
Brain MRI
    nibabel ``tests/data/example4d.nii.gz``: two axial T2*-weighted EPI
    volumes of a brain, 24 slices from the midbrain to above the ventricles.
Chest X-ray
    pydicom-data ``RG1_UNCR.dcm``: posteroanterior chest radiograph (CR).
Extremity X-ray
    pydicom-data ``RG3_UNCR.dcm``: AP radiograph of the right lower leg,
    tibia and fibula (CR).
MRI
    pydicom-data ``MR-SIEMENS-DICOM-WithOverlays.dcm``: axial T1
    fat-suppressed abdominal MRI (liver, kidneys, spleen); pydicom-data
    ``MR2_UNCR.dcm``: oblique coronal T1 spin-echo MRI of the shoulder.
Ultrasound
    pydicom-data ``JPGLosslessP14SV1_1s_1f_8b.dcm``: adult transthoracic
    echocardiogram, B-mode sector; pydicom-data ``gdcm-US-ALOKA-16.dcm``:
    transabdominal pelvic ultrasound of the urinary bladder, two panels.

Rows in original formats, so the platform's DICOM and NIfTI import runs too:
``dicom/ct_head.dcm`` (``693_UNCR.dcm``) and ``dicom/mri_abdomen.dcm``
(the Siemens abdomen), both with identifying tags blanked, and
``nifti/brain_epi.nii.gz``, the first EPI time point as a 3-D volume.

Left out after looking at them: the 64x64 MR test slices (too small), the
obstetric ultrasound (an almost empty frame), the SonoSite cine files (stored
downscaled), the colour Doppler lymph node (colour only), the whole-body bone
scan (a 60-pixel-wide body), perfusion maps, segmentations, RT dose, the
skimage ``microaneurysms`` crop (102 pixels, green channel only), the nibabel
phantoms and the 2 mm ``anatomical.nii`` (33x41 pixels a slice). The other
medical skimage images (``brain``, ``cells3d``, ``kidney``, ``skin``...) are
fetched with pooch on first use, so they are not local and not used.

Prompts describe anatomy, view, window and slice level only; findings are
never stated, because augmentation may crop them away and none may be invented.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .demo_sources import (
    MODALITY_SOURCES,
    Frame,
    nibabel_test_file,
    pydicom_data_file,
    read_dicom,
)
from .errors import DemoSourceError

if TYPE_CHECKING:
    from pydicom import Dataset


CSV_NAME = "metadata.csv"
CSV_HEADER = ("path", "Text", "modality")
RGB_MODALITIES = frozenset({"Fundus", "Histopathology"})

# Tags blanked in every DICOM copied into the demo folder, so the folder never
# spreads a name, an identifier or an institution even though the test files
# carry only pseudonyms.
_IDENTIFYING_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientAddress",
    "OtherPatientIDs",
    "OtherPatientNames",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "StationName",
    "AccessionNumber",
)


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`build_demo_dataset` wrote."""

    csv_path: Path
    counts: dict[str, int]
    sources: list[Path]


@dataclass(frozen=True)
class _Aug:
    zoom: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    angle: float = 0.0
    flip: bool = False
    quarter: int = 0
    gain: float = 1.0
    offset: float = 0.0
    gamma: float = 1.0


def build_demo_dataset(
    out_dir: Path, *, per_modality: int = 60, size: int = 256, seed: int = 0
) -> DemoSummary:
    """Write a demo dataset of real, lightly augmented medical images.

    ``out_dir/metadata.csv`` (``path,Text,modality``, paths relative to
    ``out_dir``) lists ``per_modality`` PNGs of ``size`` x ``size`` for each
    modality plus a few de-identified DICOM files and a NIfTI volume in their
    original formats. The same ``seed`` gives byte-identical output.
    """
    if per_modality < 1:
        raise ValueError(f"per_modality must be at least 1, got {per_modality}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources: list[Path] = []
    rows: list[tuple[str, str, str]] = []
    counts: dict[str, int] = {}
    for index, (modality, loaders) in enumerate(MODALITY_SOURCES):
        frames: list[Frame] = []
        for loader in loaders:
            frames.extend(loader())
        rng = np.random.default_rng([seed, index])
        modality_rows = _write_modality(
            out_dir, frames, per_modality=per_modality, size=size, rng=rng
        )
        rows.extend(modality_rows)
        counts[modality] = len(modality_rows)
        for frame in frames:
            if frame.source not in sources:
                sources.append(frame.source)
    for row in _write_original_formats(out_dir):
        rows.append(row)
        counts[row[2]] = counts.get(row[2], 0) + 1
    csv_path = out_dir / CSV_NAME
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)
    return DemoSummary(csv_path=csv_path, counts=counts, sources=sources)


def _write_modality(
    out_dir: Path,
    frames: Sequence[Frame],
    *,
    per_modality: int,
    size: int,
    rng: np.random.Generator,
) -> list[tuple[str, str, str]]:
    modality = frames[0].modality
    slug = modality.lower().replace(" ", "_").replace("-", "")
    folder = out_dir / "images" / slug
    folder.mkdir(parents=True, exist_ok=True)
    order = _interleave_by_source(frames, rng)
    prepared: dict[int, tuple[Image.Image, float]] = {}
    rows = []
    for number in range(per_modality):
        frame_index = order[number % len(order)]
        frame = frames[frame_index]
        if frame_index not in prepared:
            prepared[frame_index] = _downscaled(frame, size)
        source_image, scale = prepared[frame_index]
        # The first pass over the frames shows each one unaltered.
        aug = _Aug() if number < len(order) else _random_aug(frame, rng)
        image = _render(source_image, scale, frame, aug, size)
        name = f"{slug}_{number:04d}.png"
        # Fast zlib level: encoding dominates the build time, size hardly changes.
        image.save(folder / name, format="PNG", compress_level=1)
        text = f"{modality}: {_describe(frame, aug, rng)}"
        rows.append((f"images/{slug}/{name}", text, modality))
    return rows


def _interleave_by_source(
    frames: Sequence[Frame], rng: np.random.Generator
) -> list[int]:
    """Frame indices taking each source in turn, so a few images span them all."""
    by_source: dict[Path, list[int]] = {}
    for index, frame in enumerate(frames):
        by_source.setdefault(frame.source, []).append(index)
    queues = [list(rng.permutation(indices)) for indices in by_source.values()]
    order: list[int] = []
    while any(queues):
        for queue in queues:
            if queue:
                order.append(int(queue.pop(0)))
    return order


def _random_aug(frame: Frame, rng: np.random.Generator) -> _Aug:
    angle = float(rng.uniform(-8.0, 8.0))
    zoom = float(rng.uniform(1.0, frame.max_zoom))
    if not frame.dark_surround:
        # A square turned by the angle must still fit inside the anatomy box.
        radians = math.radians(abs(angle))
        zoom = max(zoom, math.cos(radians) + math.sin(radians))
    return _Aug(
        zoom=zoom,
        shift_x=float(rng.uniform(-1.0, 1.0)),
        shift_y=float(rng.uniform(-1.0, 1.0)),
        angle=0.0 if frame.quarter_turns else angle,
        flip=frame.flip and bool(rng.random() < 0.5),
        quarter=int(rng.integers(0, 4)) if frame.quarter_turns else 0,
        gain=float(rng.uniform(0.9, 1.1)),
        offset=float(rng.uniform(-0.03, 0.03)),
        gamma=float(rng.uniform(0.88, 1.12)),
    )


def _describe(frame: Frame, aug: _Aug, rng: np.random.Generator) -> str:
    choices = frame.descriptions
    if aug.zoom >= 1.25 and frame.close_descriptions:
        choices = frame.close_descriptions
    if aug.flip and frame.mirrored_descriptions:
        choices = frame.mirrored_descriptions
    return choices[int(rng.integers(0, len(choices)))]


def _downscaled(frame: Frame, size: int) -> tuple[Image.Image, float]:
    """The frame as a PIL image, shrunk once so cropping never has to alias."""
    image = Image.fromarray(frame.pixels)
    side = _base_side(frame)
    scale = min(1.0, 2.0 * size / side)
    if scale < 1.0:
        width = max(1, round(image.width * scale))
        height = max(1, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image, scale


def _base_side(frame: Frame) -> float:
    top, left, bottom, right = frame.roi
    height, width = bottom - top, right - left
    return float(min(height, width) if frame.cover else max(height, width))


def _render(
    image: Image.Image, scale: float, frame: Frame, aug: _Aug, size: int
) -> Image.Image:
    top, left, bottom, right = (value * scale for value in frame.roi)
    side = _base_side(frame) * scale
    crop = side / aug.zoom
    radians = math.radians(aug.angle)
    cos, sin = math.cos(radians), math.sin(radians)
    slack = max(0.0, side - crop * (abs(cos) + abs(sin))) / 2.0
    centre_x = (left + right) / 2.0 + aug.shift_x * slack
    centre_y = (top + bottom) / 2.0 + aug.shift_y * slack
    step = crop / size
    half = size / 2.0
    # Output pixel (u, v) samples the source at centre + R(angle) (u-half, v-half).
    coefficients = (
        step * cos,
        -step * sin,
        centre_x - step * (cos * half - sin * half),
        step * sin,
        step * cos,
        centre_y - step * (sin * half + cos * half),
    )
    out = image.transform(
        (size, size),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BICUBIC,
        fillcolor=0,
    )
    if aug.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if aug.quarter:
        turns = {
            1: Image.Transpose.ROTATE_90,
            2: Image.Transpose.ROTATE_180,
            3: Image.Transpose.ROTATE_270,
        }
        out = out.transpose(turns[aug.quarter])
    if (aug.gain, aug.offset, aug.gamma) != (1.0, 0.0, 1.0):
        values = np.asarray(out, dtype=np.float32) / 255.0
        values = np.power(values, aug.gamma) * aug.gain + aug.offset
        out = Image.fromarray(np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return out


# --- original formats ------------------------------------------------------------


def _write_original_formats(out_dir: Path) -> list[tuple[str, str, str]]:
    """Copy a few real files in DICOM and NIfTI so those import paths run too."""
    dicom_dir = out_dir / "dicom"
    dicom_dir.mkdir(parents=True, exist_ok=True)
    copies = (
        (
            pydicom_data_file("693_UNCR.dcm"),
            "ct_head.dcm",
            "CT: axial non-contrast CT of the head through the cerebral hemispheres",
            "CT",
        ),
        (
            pydicom_data_file("MR-SIEMENS-DICOM-WithOverlays.dcm"),
            "mri_abdomen.dcm",
            "MRI: axial T1-weighted fat-suppressed MRI of the upper abdomen "
            "showing liver, kidneys and spleen",
            "MRI",
        ),
    )
    rows = []
    for number, (source, name, text, modality) in enumerate(copies, start=1):
        dataset = read_dicom(source)
        _deidentify(dataset, number=number)
        dataset.save_as(dicom_dir / name, enforce_file_format=True)
        rows.append((f"dicom/{name}", text, modality))
    rows.append(_write_brain_volume(out_dir))
    return rows


def _deidentify(dataset: Dataset, *, number: int) -> None:
    for keyword in _IDENTIFYING_TAGS:
        if keyword in dataset:
            dataset[keyword].value = ""
    # Vendor private blocks (e.g. Siemens CSA headers) may repeat any of them.
    dataset.remove_private_tags()
    # Person names can also sit inside sequences (requesting physician...).
    for element in dataset.iterall():
        if element.VR == "PN":
            element.value = ""
    dataset.PatientName = ""
    dataset.PatientID = f"DEMO{number:04d}"
    dataset.PatientIdentityRemoved = "YES"


def _write_brain_volume(out_dir: Path) -> tuple[str, str, str]:
    """The first EPI time point as a 3-D NIfTI, gzipped with a fixed timestamp."""
    import nibabel

    source = nibabel_test_file("example4d.nii.gz")
    image = nibabel.load(source)
    if not isinstance(image, nibabel.Nifti1Image):
        raise DemoSourceError(f"{source}: not a NIfTI-1 image")
    volume = np.asarray(image.dataobj[..., 0])
    header = image.header.copy()
    header.set_data_shape(volume.shape)
    three_d = nibabel.Nifti1Image(volume, image.affine, header)
    nifti_dir = out_dir / "nifti"
    nifti_dir.mkdir(parents=True, exist_ok=True)
    target = nifti_dir / "brain_epi.nii.gz"
    target.write_bytes(gzip.compress(three_d.to_bytes(), mtime=0))
    return (
        "nifti/brain_epi.nii.gz",
        "Brain MRI: axial T2*-weighted echo-planar slices of the brain",
        "Brain MRI",
    )
