"""The demo's real images: packaged files, read, windowed, by modality."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

from models_ml.engine.errors import DemoSourceError

if TYPE_CHECKING:
    from pydicom import Dataset


@dataclass(frozen=True)
class Frame:
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


def pydicom_data_file(name: str) -> Path:
    return _package_file("data_store", "data", name)


def _pydicom_test(name: str) -> Path:
    return _package_file("pydicom", "data", "test_files", name)


def nibabel_test_file(name: str) -> Path:
    return _package_file("nibabel", "tests", "data", name)


def _skimage_data(name: str) -> Path:
    return _package_file("skimage", "data", name)


def read_dicom(path: Path) -> Dataset:
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
    dataset = read_dicom(path)
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


def _fundus() -> list[Frame]:
    path = _skimage_data("retina.jpg")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    # Optic disc and fovea centres, measured on the 1411x1411 photograph.
    disc_y, disc_x, fovea_y, fovea_x = 648, 253, 697, 703
    return [
        Frame(
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
        Frame(
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
        Frame(
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


def _histopathology() -> list[Frame]:
    path = _skimage_data("ihc.png")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return [
        Frame(
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


def _ct() -> list[Frame]:
    head = pydicom_data_file("693_UNCR.dcm")
    skull_base = _pydicom_test("J2K_pixelrep_mismatch.dcm")
    abdomen = pydicom_data_file("explicit_VR-UN.dcm")
    spine = pydicom_data_file("bad_sequence.dcm")
    brain_window, bone_window = (40.0, 80.0), (500.0, 2500.0)
    head_pixels = _dicom_gray(head, window=brain_window)
    return [
        Frame(
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
        Frame(
            modality="CT",
            pixels=_dicom_gray(head, window=bone_window),
            roi=(50, 110, 460, 400),
            descriptions=(
                "axial non-contrast CT of the head in bone window showing the "
                "skull vault",
            ),
            source=head,
        ),
        Frame(
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
        Frame(
            modality="CT",
            pixels=_dicom_gray(skull_base, window=bone_window),
            roi=(30, 60, 480, 450),
            descriptions=(
                "axial head CT at the skull base in bone window showing the "
                "petrous bones and orbits",
            ),
            source=skull_base,
        ),
        Frame(
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
        Frame(
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

    path = nibabel_test_file("example4d.nii.gz")
    image = nibabel.load(path)
    if not isinstance(image, nibabel.Nifti1Image):
        raise DemoSourceError(f"{path}: not a NIfTI-1 image")
    data = np.asarray(image.dataobj, dtype=np.float32)
    return path, data


def _brain_mri() -> list[Frame]:
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
                    Frame(
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


def _chest_xray() -> list[Frame]:
    path = pydicom_data_file("RG1_UNCR.dcm")
    # Clipping the brightest 5 % of raw values (direct exposure) gives the lungs
    # the dark, contrasty look of a reading-room chest film.
    pixels = _dicom_gray(path, percentiles=(1.0, 95.0))
    return [
        Frame(
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


def _extremity_xray() -> list[Frame]:
    path = pydicom_data_file("RG3_UNCR.dcm")
    pixels = _dicom_gray(path)
    return [
        Frame(
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


def _mri() -> list[Frame]:
    abdomen = pydicom_data_file("MR-SIEMENS-DICOM-WithOverlays.dcm")
    shoulder = pydicom_data_file("MR2_UNCR.dcm")
    abdomen_pixels = _dicom_gray(abdomen, window=(450.0, 790.0))
    shoulder_pixels = _dicom_gray(shoulder)
    return [
        Frame(
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
        Frame(
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


def _ultrasound() -> list[Frame]:
    echo = pydicom_data_file("JPGLosslessP14SV1_1s_1f_8b.dcm")
    pelvis = pydicom_data_file("gdcm-US-ALOKA-16.dcm")
    echo_pixels = _dicom_gray(echo, window=(127.0, 254.0))
    pelvis_pixels = _dicom_gray(pelvis)
    pelvis_text = (
        "B-mode transabdominal pelvic ultrasound showing the urinary bladder",
        "grayscale pelvic ultrasound with the fluid-filled urinary bladder",
    )
    # Regions come from each file's Sequence of Ultrasound Regions, trimmed
    # so burned-in text and calipers' labels stay outside the crop.
    return [
        Frame(
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
        Frame(
            modality="Ultrasound",
            pixels=pelvis_pixels,
            roi=(60, 40, 415, 330),
            descriptions=pelvis_text,
            dark_surround=False,
            cover=True,
            max_zoom=1.3,
            source=pelvis,
        ),
        Frame(
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


MODALITY_SOURCES: tuple[tuple[str, tuple[Callable[[], list[Frame]], ...]], ...] = (
    ("Fundus", (_fundus,)),
    ("CT", (_ct,)),
    ("Brain MRI", (_brain_mri,)),
    ("Chest X-ray", (_chest_xray,)),
    ("MRI", (_mri,)),
    ("Extremity X-ray", (_extremity_xray,)),
    ("Ultrasound", (_ultrasound,)),
    ("Histopathology", (_histopathology,)),
)
