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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

from models_ml.engine.errors import EngineError

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


class DemoSourceError(EngineError):
    """A package file the demo needs is missing or cannot be decoded."""


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`build_demo_dataset` wrote."""

    csv_path: Path
    counts: dict[str, int]
    sources: list[Path]


@dataclass(frozen=True)
class _Frame:
    """One 2-D picture to augment, with the prompts that describe it.

    ``roi`` is (top, left, bottom, right) in pixels: the anatomy to keep in
    view. ``dark_surround`` says whether black beyond the anatomy looks natural
    (CT, MRI, fundus), which allows rotation without extra zoom.
    """

    modality: str
    pixels: np.ndarray
    descriptions: tuple[str, ...]
    roi: tuple[int, int, int, int]
    close_descriptions: tuple[str, ...] = ()
    mirrored_descriptions: tuple[str, ...] = ()
    dark_surround: bool = True
    cover: bool = False
    flip: bool = False
    quarter_turns: bool = False
    max_zoom: float = 1.4
    source: Path = field(default_factory=Path)


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
    for index, (modality, loaders) in enumerate(_MODALITY_SOURCES):
        frames: list[_Frame] = []
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
    frames: Sequence[_Frame],
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
    frames: Sequence[_Frame], rng: np.random.Generator
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


def _random_aug(frame: _Frame, rng: np.random.Generator) -> _Aug:
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


def _describe(frame: _Frame, aug: _Aug, rng: np.random.Generator) -> str:
    choices = frame.descriptions
    if aug.zoom >= 1.25 and frame.close_descriptions:
        choices = frame.close_descriptions
    if aug.flip and frame.mirrored_descriptions:
        choices = frame.mirrored_descriptions
    return choices[int(rng.integers(0, len(choices)))]


def _downscaled(frame: _Frame, size: int) -> tuple[Image.Image, float]:
    """The frame as a PIL image, shrunk once so cropping never has to alias."""
    image = Image.fromarray(frame.pixels)
    side = _base_side(frame)
    scale = min(1.0, 2.0 * size / side)
    if scale < 1.0:
        width = max(1, round(image.width * scale))
        height = max(1, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image, scale


def _base_side(frame: _Frame) -> float:
    top, left, bottom, right = frame.roi
    height, width = bottom - top, right - left
    return float(min(height, width) if frame.cover else max(height, width))


def _render(
    image: Image.Image, scale: float, frame: _Frame, aug: _Aug, size: int
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


# --- source files --------------------------------------------------------------


def _package_file(package: str, *parts: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DemoSourceError(f"package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise DemoSourceError(f"{package} does not ship {'/'.join(parts)}: {path}")
    return path


def _pydicom_data(name: str) -> Path:
    return _package_file("data_store", "data", name)


def _pydicom_test(name: str) -> Path:
    return _package_file("pydicom", "data", "test_files", name)


def _nibabel_test(name: str) -> Path:
    return _package_file("nibabel", "tests", "data", name)


def _skimage_data(name: str) -> Path:
    return _package_file("skimage", "data", name)


def _read_dicom(path: Path) -> Dataset:
    import pydicom

    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many unrelated types
        raise DemoSourceError(f"cannot read DICOM {path}: {exc}") from exc


def _dicom_gray(
    path: Path,
    *,
    window: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = (0.5, 99.7),
) -> npt.NDArray[np.uint8]:
    """A DICOM's first frame as 8-bit grayscale, windowed, MONOCHROME1 inverted.

    Private and minimal on purpose: the platform's readers module is the full
    importer; this only needs the handful of files listed in the docstring.
    """
    dataset = _read_dicom(path)
    try:
        pixels = dataset.pixel_array
    except Exception as exc:
        raise DemoSourceError(f"cannot decode pixels of {path}: {exc}") from exc
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, dataset).astype(np.float32).mean(axis=-1)
    elif pixels.ndim == 3 and pixels.shape[-1] == 3:
        pixels = pixels.astype(np.float32).mean(axis=-1)
    values = pixels.astype(np.float32)
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    values = values * slope + intercept
    if window is None:
        low, high = (float(v) for v in np.percentile(values, percentiles))
    else:
        centre, width = window
        low, high = centre - width / 2.0, centre + width / 2.0
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    # (numpy types np.clip of these pixels as returning Any)
    gray: npt.NDArray[np.uint8] = (scaled * 255.0 + 0.5).astype(np.uint8)
    return gray


def _full(pixels: np.ndarray) -> tuple[int, int, int, int]:
    return (0, 0, pixels.shape[0], pixels.shape[1])


def _fundus() -> list[_Frame]:
    path = _skimage_data("retina.jpg")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    # Optic disc and fovea centres, measured on the 1411x1411 photograph.
    disc_y, disc_x, fovea_y, fovea_x = 648, 253, 697, 703
    return [
        _Frame(
            modality="Fundus",
            pixels=pixels,
            roi=_full(pixels),
            descriptions=(
                "colour fundus photograph of the left eye with optic disc, "
                "macula and retinal vessels",
                "colour fundus photograph of the retina showing the optic disc, "
                "macula and vascular arcades",
                "posterior pole photograph of the left retina with optic disc "
                "and branching retinal arteries and veins",
            ),
            close_descriptions=(
                "magnified colour fundus photograph of the posterior pole with "
                "retinal vessels",
            ),
            mirrored_descriptions=(
                "colour fundus photograph of the retina with optic disc, macula "
                "and retinal vessels",
            ),
            flip=True,
            source=path,
        ),
        _Frame(
            modality="Fundus",
            pixels=pixels,
            roi=(disc_y - 330, disc_x - 230, disc_y + 330, disc_x + 430),
            descriptions=(
                "colour fundus photograph centred on the optic disc with the "
                "emerging retinal vessels",
                "close-up of the optic nerve head and peripapillary retina",
            ),
            dark_surround=False,
            cover=True,
            flip=True,
            max_zoom=1.6,
            source=path,
        ),
        _Frame(
            modality="Fundus",
            pixels=pixels,
            roi=(fovea_y - 380, fovea_x - 380, fovea_y + 380, fovea_x + 380),
            descriptions=(
                "colour fundus photograph centred on the macula and fovea with "
                "surrounding retinal vessels",
                "macula-centred view of the retina with the darker foveal region",
            ),
            dark_surround=False,
            cover=True,
            flip=True,
            source=path,
        ),
    ]


def _histopathology() -> list[_Frame]:
    path = _skimage_data("ihc.png")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return [
        _Frame(
            modality="Histopathology",
            pixels=pixels,
            roi=_full(pixels),
            descriptions=(
                "immunohistochemistry of colonic glands, brown DAB staining "
                "with blue hematoxylin counterstain",
                "colon tissue section with glandular crypts, FHL2 "
                "immunohistochemistry and hematoxylin counterstain",
                "light micrograph of colonic mucosa glands stained by "
                "immunohistochemistry (DAB) and hematoxylin",
            ),
            dark_surround=False,
            cover=True,
            flip=True,
            quarter_turns=True,
            max_zoom=2.0,
            source=path,
        )
    ]


def _ct() -> list[_Frame]:
    head = _pydicom_data("693_UNCR.dcm")
    skull_base = _pydicom_test("J2K_pixelrep_mismatch.dcm")
    abdomen = _pydicom_data("explicit_VR-UN.dcm")
    spine = _pydicom_data("bad_sequence.dcm")
    brain_window, bone_window = (40.0, 80.0), (500.0, 2500.0)
    head_pixels = _dicom_gray(head, window=brain_window)
    return [
        _Frame(
            modality="CT",
            pixels=head_pixels,
            roi=(50, 110, 460, 400),
            descriptions=(
                "axial non-contrast CT of the head through the cerebral "
                "hemispheres, brain window",
                "non-contrast head CT, axial slice above the skull base showing "
                "grey and white matter and the falx",
            ),
            source=head,
        ),
        _Frame(
            modality="CT",
            pixels=_dicom_gray(head, window=bone_window),
            roi=(50, 110, 460, 400),
            descriptions=(
                "axial non-contrast CT of the head in bone window showing the "
                "skull vault",
            ),
            source=head,
        ),
        _Frame(
            modality="CT",
            pixels=_dicom_gray(skull_base, window=brain_window),
            roi=(30, 60, 480, 450),
            descriptions=(
                "axial CT of the head at the skull base showing the posterior "
                "fossa, temporal lobes and orbits, brain window",
                "axial head CT at the level of the cerebellum and temporal lobes",
            ),
            source=skull_base,
        ),
        _Frame(
            modality="CT",
            pixels=_dicom_gray(skull_base, window=bone_window),
            roi=(30, 60, 480, 450),
            descriptions=(
                "axial head CT at the skull base in bone window showing the "
                "petrous bones and orbits",
            ),
            source=skull_base,
        ),
        _Frame(
            modality="CT",
            pixels=_dicom_gray(abdomen, window=(40.0, 400.0)),
            roi=(130, 60, 440, 450),
            descriptions=(
                "axial contrast-enhanced CT of the upper abdomen at the level "
                "of the pancreas and kidneys, soft-tissue window",
                "contrast-enhanced abdominal CT, axial slice showing liver, "
                "kidneys, pancreas, aorta and bowel loops",
            ),
            source=abdomen,
        ),
        _Frame(
            modality="CT",
            pixels=_dicom_gray(spine, window=(450.0, 1500.0)),
            roi=(40, 0, 512, 512),
            descriptions=(
                "axial CT through a vertebra and its posterior elements, bone window",
                "small field-of-view axial spine CT showing the vertebral body, "
                "spinal canal and laminae",
            ),
            dark_surround=False,
            cover=True,
            source=spine,
        ),
    ]


# Slice bands of example4d.nii.gz, read off its 24 axial slices.
_BRAIN_LEVELS = (
    (0, 6, "at the level of the midbrain and temporal lobes"),
    (6, 12, "at the level of the basal ganglia and third ventricle"),
    (12, 18, "at the level of the lateral ventricles"),
    (18, 22, "through the bodies of the lateral ventricles"),
    (22, 24, "above the lateral ventricles, at the centrum semiovale"),
)


def _brain_volume() -> tuple[Path, np.ndarray]:
    import nibabel

    path = _nibabel_test("example4d.nii.gz")
    image = nibabel.load(path)
    if not isinstance(image, nibabel.Nifti1Image):
        raise DemoSourceError(f"{path}: not a NIfTI-1 image")
    data = np.asarray(image.dataobj, dtype=np.float32)
    return path, data


def _brain_mri() -> list[_Frame]:
    path, data = _brain_volume()
    high = float(np.percentile(data, 99.7))
    # One box around the head on every slice keeps the zoom equal across slices.
    head = np.rot90(data.max(axis=(2, 3)) > 0.1 * high)
    rows, cols = np.nonzero(head)
    margin = 4
    roi = (
        max(int(rows.min()) - margin, 0),
        max(int(cols.min()) - margin, 0),
        min(int(rows.max()) + 1 + margin, head.shape[0]),
        min(int(cols.max()) + 1 + margin, head.shape[1]),
    )
    frames = []
    for volume in range(data.shape[3]):
        for first, last, level in _BRAIN_LEVELS:
            for z in range(first, last):
                # LAS voxel order: a quarter turn puts anterior at the top and the
                # patient's right on the image's left, as radiologists read it.
                plane = np.rot90(data[:, :, z, volume])
                pixels = np.clip(plane / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
                frames.append(
                    _Frame(
                        modality="Brain MRI",
                        pixels=np.ascontiguousarray(pixels),
                        roi=roi,
                        descriptions=(
                            f"axial T2*-weighted echo-planar slice {level}",
                            f"axial EPI image of the brain {level}",
                            f"functional MRI volume, axial brain slice {level}",
                        ),
                        max_zoom=1.25,
                        source=path,
                    )
                )
    return frames


def _chest_xray() -> list[_Frame]:
    path = _pydicom_data("RG1_UNCR.dcm")
    # Clipping the brightest 5 % of raw values (direct exposure) gives the lungs
    # the dark, contrasty look of a reading-room chest film.
    pixels = _dicom_gray(path, percentiles=(1.0, 95.0))
    return [
        _Frame(
            modality="Chest X-ray",
            pixels=pixels,
            roi=_full(pixels),
            descriptions=(
                "posteroanterior chest radiograph showing both lung fields, the "
                "heart and mediastinum",
                "PA chest X-ray with lungs, heart silhouette, diaphragm and ribs",
                "frontal chest radiograph of an adult, PA projection",
            ),
            close_descriptions=(
                "PA chest radiograph, magnified view of the lungs and heart",
            ),
            dark_surround=False,
            cover=True,
            max_zoom=1.3,
            source=path,
        )
    ]


def _extremity_xray() -> list[_Frame]:
    path = _pydicom_data("RG3_UNCR.dcm")
    pixels = _dicom_gray(path)
    return [
        _Frame(
            modality="Extremity X-ray",
            pixels=pixels,
            roi=(0, 200, 1760, 1560),
            descriptions=(
                "AP radiograph of the right lower leg showing the tibia and fibula",
                "anteroposterior X-ray of the lower leg with tibial and fibular "
                "shafts and the ankle",
            ),
            close_descriptions=(
                "AP radiograph of the lower leg, magnified view of the tibia and "
                "fibula",
            ),
            dark_surround=False,
            cover=True,
            max_zoom=1.6,
            source=path,
        )
    ]


def _mri() -> list[_Frame]:
    abdomen = _pydicom_data("MR-SIEMENS-DICOM-WithOverlays.dcm")
    shoulder = _pydicom_data("MR2_UNCR.dcm")
    abdomen_pixels = _dicom_gray(abdomen, window=(450.0, 790.0))
    shoulder_pixels = _dicom_gray(shoulder)
    return [
        _Frame(
            modality="MRI",
            pixels=abdomen_pixels,
            roi=(90, 20, 420, 470),
            descriptions=(
                "axial T1-weighted fat-suppressed MRI of the upper abdomen "
                "showing liver, kidneys, spleen and aorta",
                "abdominal MRI, axial T1 gradient-echo slice through the liver "
                "and both kidneys",
            ),
            source=abdomen,
        ),
        _Frame(
            modality="MRI",
            pixels=shoulder_pixels,
            roi=(100, 100, 1024, 1024),
            descriptions=(
                "oblique coronal T1-weighted spin-echo MRI of the shoulder "
                "showing the humeral head and acromion",
                "shoulder MRI, T1-weighted oblique coronal image of the "
                "glenohumeral joint",
            ),
            dark_surround=False,
            cover=True,
            max_zoom=1.5,
            source=shoulder,
        ),
    ]


def _ultrasound() -> list[_Frame]:
    echo = _pydicom_data("JPGLosslessP14SV1_1s_1f_8b.dcm")
    pelvis = _pydicom_data("gdcm-US-ALOKA-16.dcm")
    echo_pixels = _dicom_gray(echo, window=(127.0, 254.0))
    pelvis_pixels = _dicom_gray(pelvis)
    pelvis_text = (
        "B-mode transabdominal pelvic ultrasound showing the urinary bladder",
        "grayscale pelvic ultrasound with the fluid-filled urinary bladder",
    )
    # Regions come from each file's Sequence of Ultrasound Regions, trimmed
    # so burned-in text and calipers' labels stay outside the crop.
    return [
        _Frame(
            modality="Ultrasound",
            pixels=echo_pixels,
            roi=(110, 200, 700, 880),
            descriptions=(
                "B-mode transthoracic echocardiogram of an adult heart, sector image",
                "adult echocardiography, grayscale sector view of the heart",
            ),
            dark_surround=False,
            cover=True,
            max_zoom=1.3,
            source=echo,
        ),
        _Frame(
            modality="Ultrasound",
            pixels=pelvis_pixels,
            roi=(60, 40, 415, 330),
            descriptions=pelvis_text,
            dark_surround=False,
            cover=True,
            max_zoom=1.3,
            source=pelvis,
        ),
        _Frame(
            modality="Ultrasound",
            pixels=pelvis_pixels,
            roi=(60, 344, 415, 634),
            descriptions=pelvis_text,
            dark_surround=False,
            cover=True,
            max_zoom=1.3,
            source=pelvis,
        ),
    ]


_MODALITY_SOURCES: tuple[tuple[str, tuple[Callable[[], list[_Frame]], ...]], ...] = (
    ("Fundus", (_fundus,)),
    ("CT", (_ct,)),
    ("Brain MRI", (_brain_mri,)),
    ("Chest X-ray", (_chest_xray,)),
    ("MRI", (_mri,)),
    ("Extremity X-ray", (_extremity_xray,)),
    ("Ultrasound", (_ultrasound,)),
    ("Histopathology", (_histopathology,)),
)


# --- original formats ------------------------------------------------------------


def _write_original_formats(out_dir: Path) -> list[tuple[str, str, str]]:
    """Copy a few real files in DICOM and NIfTI so those import paths run too."""
    dicom_dir = out_dir / "dicom"
    dicom_dir.mkdir(parents=True, exist_ok=True)
    copies = (
        (
            _pydicom_data("693_UNCR.dcm"),
            "ct_head.dcm",
            "CT: axial non-contrast CT of the head through the cerebral hemispheres",
            "CT",
        ),
        (
            _pydicom_data("MR-SIEMENS-DICOM-WithOverlays.dcm"),
            "mri_abdomen.dcm",
            "MRI: axial T1-weighted fat-suppressed MRI of the upper abdomen "
            "showing liver, kidneys and spleen",
            "MRI",
        ),
    )
    rows = []
    for number, (source, name, text, modality) in enumerate(copies, start=1):
        dataset = _read_dicom(source)
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

    source = _nibabel_test("example4d.nii.gz")
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
