"""DICOM de-identification after PS3.15 Annex E, Basic Application Level
Confidentiality Profile, plus the small header subset the platform keeps.

Dates and times are removed rather than shifted (the platform never needs
them), person names are emptied wherever they appear, non-standard UIDs are
remapped through a salted keyed hash, private and overlay/curve groups are
dropped, and the rules apply inside every sequence item.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# LO values hold at most 64 characters.
DEID_METHOD = "medrlhf: PS3.15 E.1.1 Basic Application Confidentiality Profile"

# Attributes the profile removes (X) or empties (Z/D) that the generic VR and
# keyword rules below would not catch on their own.
_REMOVE: frozenset[str] = frozenset(
    {
        "AccessionNumber",
        "AcquisitionComments",
        "AcquisitionContextSequence",
        "AcquisitionDeviceProcessingDescription",
        "AcquisitionProtocolDescription",
        "ActualHumanPerformersSequence",
        "AdditionalPatientHistory",
        "AdmittingDiagnosesCodeSequence",
        "AdmittingDiagnosesDescription",
        "Allergies",
        "Arbitrary",
        "AuthorObserverSequence",
        "BranchOfService",
        "CassetteID",
        "ConfidentialityConstraintOnPatientDataDescription",
        "ContentCreatorIdentificationCodeSequence",
        "ContentSequence",
        "ContributionDescription",
        "CountryOfResidence",
        "CurrentPatientLocation",
        "CustodialOrganizationSequence",
        "DerivationDescription",
        "DeviceDescription",
        "DeviceSerialNumber",
        "DigitalSignaturesSequence",
        "DischargeDiagnosisDescription",
        "EncryptedAttributesSequence",
        "EthnicGroup",
        "FillerOrderNumberImagingServiceRequest",
        "FrameComments",
        "GantryID",
        "HumanPerformerOrganization",
        "IconImageSequence",
        "IdentifyingComments",
        "ImageComments",
        "ImagingServiceRequestComments",
        "InstitutionAddress",
        "InstitutionCodeSequence",
        "InstitutionName",
        "InstitutionalDepartmentName",
        "InstitutionalDepartmentTypeCodeSequence",
        "InsurancePlanIdentification",
        "IntendedRecipientsOfResultsIdentificationSequence",
        "InterpretationApproverSequence",
        "InterpretationDiagnosisDescription",
        "InterpretationRecorder",
        "InterpretationText",
        "InterpretationTranscriber",
        "IssuerOfAccessionNumberSequence",
        "IssuerOfAdmissionIDSequence",
        "IssuerOfPatientIDQualifiersSequence",
        "IssuerOfServiceEpisodeIDSequence",
        "MACParametersSequence",
        "MedicalAlerts",
        "MedicalRecordLocator",
        "MilitaryRank",
        "ModifiedAttributesSequence",
        "NameOfPhysiciansReadingStudy",
        "Occupation",
        "OperatorIdentificationSequence",
        "OrderCallbackPhoneNumber",
        "OrderCallbackTelecomInformation",
        "OrderEnteredBy",
        "OrderEntererLocation",
        "OriginalAttributesSequence",
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "PatientAge",
        "PatientInstitutionResidence",
        "PatientInsurancePlanCodeSequence",
        "PatientMotherBirthName",
        "PatientPrimaryLanguageCodeSequence",
        "PatientPrimaryLanguageModifierCodeSequence",
        "PatientReligiousPreference",
        "PatientSexNeutered",
        "PatientSize",
        "PatientState",
        "PatientTelecomInformation",
        "PatientTelephoneNumbers",
        "PatientWeight",
        "PatientBirthName",
        "PatientAddress",
        "PerformedLocation",
        "PerformedProcedureStepDescription",
        "PerformedStationAETitle",
        "PerformedStationGeographicLocationCodeSequence",
        "PerformedStationName",
        "PerformedStationNameCodeSequence",
        "PerformingPhysicianIdentificationSequence",
        "PersonIdentificationCodeSequence",
        "PersonTelecomInformation",
        "PhysiciansOfRecordIdentificationSequence",
        "PhysiciansReadingStudyIdentificationSequence",
        "PlacerOrderNumberImagingServiceRequest",
        "PlateID",
        "PregnancyStatus",
        "ProtocolName",
        "ReasonForStudy",
        "ReasonForTheImagingServiceRequest",
        "ReasonForTheRequestedProcedure",
        "ReferencedPatientAliasSequence",
        "ReferencedPatientPhotoSequence",
        "ReferencedPatientSequence",
        "ReferencedPerformedProcedureStepSequence",
        "ReferringPhysicianIdentificationSequence",
        "ReferringPhysicianTelephoneNumbers",
        "RegionOfResidence",
        "RequestAttributesSequence",
        "RequestedContrastAgent",
        "RequestedProcedureComments",
        "RequestedProcedureDescription",
        "RequestedProcedureLocation",
        "RequestingService",
        "ResponsibleOrganization",
        "ResultsDistributionListSequence",
        "ScheduledHumanPerformersSequence",
        "ScheduledPatientInstitutionResidence",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepLocation",
        "ScheduledStationAETitle",
        "ScheduledStationGeographicLocationCodeSequence",
        "ScheduledStationName",
        "ScheduledStationNameCodeSequence",
        "ScheduledStudyLocation",
        "ScheduledStudyLocationAETitle",
        "SeriesDescription",
        "ServiceEpisodeDescription",
        "SmokingStatus",
        "SpecialNeeds",
        "StationName",
        "StudyDescription",
        "TextComments",
        "TextString",
        "TopicAuthor",
        "TopicKeywords",
        "TopicSubject",
        "TopicTitle",
        "VerifyingOrganization",
        "VisitComments",
    }
)

# Removing these would leave an image unusable; their values are standard codes.
_UID_KEEP_SUFFIXES = ("ClassUID", "TransferSyntaxUID", "CodingSchemeUID")

_SENSITIVE_KEYWORD = re.compile(r"(Comment|Address|Telephone|Telecom|Phone|Email)")
_ID_KEYWORD = re.compile(r"(ID|IDs|Identifier)$")
_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_META_REMOVE = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
    "SourcePresentationAddress",
    "SendingPresentationAddress",
    "ReceivingPresentationAddress",
    "PrivateInformationCreatorUID",
    "PrivateInformation",
)


class UidMap:
    """Deterministic replacement UIDs: one salt, one consistent mapping.

    The same input UID always gets the same ``2.25.<decimal>`` UID for a given
    salt, so files of one study stay linked after de-identification while the
    original UID cannot be recovered without the salt.
    """

    def __init__(self, salt: str | bytes | None = None) -> None:
        if salt is None:
            salt = secrets.token_bytes(32)
        self._salt = salt.encode() if isinstance(salt, str) else bytes(salt)
        if not self._salt:
            raise ValueError("UidMap salt must not be empty")
        self._mapping: dict[str, str] = {}

    def _digest(self, domain: str, value: str) -> bytes:
        message = f"{domain}\x00{value}".encode()
        return hmac.new(self._salt, message, hashlib.sha256).digest()

    def remap(self, uid: str) -> str:
        """Return the replacement for ``uid`` (stripped of padding)."""
        key = uid.strip().rstrip("\x00")
        if key not in self._mapping:
            number = int.from_bytes(self._digest("uid", key)[:16], "big")
            self._mapping[key] = f"2.25.{number}"
        return self._mapping[key]

    def pseudonym(self, value: str, *, prefix: str = "ANON") -> str:
        """A stable opaque stand-in for an identifier such as a patient ID."""
        return f"{prefix}-{self._digest('id', value.strip()).hex()[:16].upper()}"

    def __len__(self) -> int:
        return len(self._mapping)

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, str) and uid.strip() in self._mapping


@dataclass
class DeidResult:
    """What ``deidentify`` changed; ``dataset`` is the (same, edited) dataset."""

    dataset: Dataset
    removed: list[str] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)
    remapped_uids: int = 0
    burned_in_annotation: bool = False


def _is_standard_uid(value: str) -> bool:
    from pydicom.uid import UID

    return UID(value).name != value


def _clean(ds: Dataset, uid_map: UidMap, result: DeidResult, prefix: str) -> None:
    from pydicom.datadict import keyword_for_tag

    for elem in list(ds):
        tag = elem.tag
        keyword = elem.keyword or keyword_for_tag(tag) or ""
        label = f"{prefix}{keyword or str(tag)}"
        group = tag.group
        if (
            tag.is_private
            or 0x5000 <= group <= 0x50FF
            or (0x6000 <= group <= 0x60FF and tag.element in (0x3000, 0x4000))
            or keyword in _REMOVE
            or _SENSITIVE_KEYWORD.search(keyword)
        ):
            del ds[tag]
            result.removed.append(label)
            continue
        vr = elem.VR
        if vr == "SQ":
            for index, item in enumerate(elem.value or []):
                _clean(item, uid_map, result, f"{label}[{index}].")
            continue
        if keyword == "PatientID" and elem.value:
            elem.value = uid_map.pseudonym(str(elem.value))
            result.emptied.append(label)
        elif vr == "PN" or vr in _DATE_VRS:
            if elem.value not in (None, "", b""):
                elem.value = ""
                result.emptied.append(label)
        elif vr in _TEXT_VRS and _ID_KEYWORD.search(keyword):
            if elem.value not in (None, "", b""):
                elem.value = ""
                result.emptied.append(label)
        elif vr == "UI" and elem.value and not keyword.endswith(_UID_KEEP_SUFFIXES):
            elem.value = _remap_uid_value(elem.value, uid_map, result)
        elif vr in ("UN", "OB", "OW", "UT") and keyword in ("", None):
            del ds[tag]
            result.removed.append(label)


def _remap_uid_value(value: Any, uid_map: UidMap, result: DeidResult) -> Any:
    from pydicom.multival import MultiValue

    multi = isinstance(value, list | tuple | MultiValue)
    remapped = []
    for uid in list(value) if multi else [value]:
        text = str(uid)
        if not text or _is_standard_uid(text):
            remapped.append(text)
            continue
        before = len(uid_map)
        remapped.append(uid_map.remap(text))
        result.remapped_uids += len(uid_map) - before
    return remapped if multi else remapped[0]


def deidentify(ds: Dataset, *, uid_map: UidMap) -> DeidResult:
    """Apply the Basic Application Level Confidentiality Profile in place.

    Patient, staff and institution identifiers, addresses, free text,
    accession numbers and all dates/times are removed or emptied, private tags
    and overlay/curve groups dropped, non-standard UIDs remapped through
    ``uid_map`` (file meta included), and the de-identification recorded in
    PatientIdentityRemoved / DeidentificationMethod(CodeSequence).
    """
    from pydicom.dataset import Dataset as PydicomDataset
    from pydicom.sequence import Sequence

    result = DeidResult(dataset=ds)
    result.burned_in_annotation = is_burned_in(ds)
    _clean(ds, uid_map, result, "")
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for keyword in _META_REMOVE:
            if keyword in meta:
                delattr(meta, keyword)
                result.removed.append(f"file_meta.{keyword}")
        uid = meta.get("MediaStorageSOPInstanceUID")
        if uid and not _is_standard_uid(str(uid)):
            meta.MediaStorageSOPInstanceUID = _remap_uid_value(uid, uid_map, result)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEID_METHOD
    code = PydicomDataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    return result


def is_burned_in(ds: Dataset) -> bool:
    """True when the header declares burned-in annotation (identifying text)."""
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"


# Modalities whose images commonly carry burned-in text (patient name, dates,
# institution) in their pixels: ultrasound, secondary capture, angiography,
# endoscopy, ophthalmic photography, external-camera photography.
BURNED_IN_PRONE_MODALITIES = frozenset({"US", "SC", "XA", "ES", "OP", "XC"})
# Secondary Capture Image Storage and its multi-frame variants (.7.1-.7.4).
SECONDARY_CAPTURE_SOP = "1.2.840.10008.5.1.4.1.1.7"


def burned_in_reason(ds: Dataset) -> str:
    """Why an image must be quarantined for burned-in text, or "".

    ``BurnedInAnnotation`` YES quarantines and NO clears. Absent (or any
    other value) is unknown, and for the modalities and SOP classes that
    commonly carry burned-in text unknown quarantines too, until an admin
    has looked at the image.
    """
    declared = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if declared == "YES":
        return "DICOM BurnedInAnnotation=YES"
    if declared == "NO":
        return ""
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop = str(ds.get("SOPClassUID", "") or "")
    secondary = sop == SECONDARY_CAPTURE_SOP or sop.startswith(
        SECONDARY_CAPTURE_SOP + "."
    )
    if modality not in BURNED_IN_PRONE_MODALITIES and not secondary:
        return ""
    kind = "secondary capture" if secondary else modality
    said = "absent" if not declared else f"{declared!r}"
    return (
        f"DICOM BurnedInAnnotation {said} on a {kind} image, which often "
        "carries burned-in text: an admin must look at it before it is served"
    )


def first_number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes):
        try:
            return float(value)
        except ValueError:
            return None
    try:
        return float(value[0]) if hasattr(value, "__len__") else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def kept_header(ds: Dataset) -> dict[str, Any]:
    """The small, identifier-free subset of the header the platform stores."""
    kept: dict[str, Any] = {}
    for keyword in ("Modality", "BodyPartExamined", "PhotometricInterpretation"):
        value = ds.get(keyword)
        if value not in (None, ""):
            kept[keyword] = re.sub(r"[^A-Za-z0-9 _-]", "", str(value))[:32]
    for keyword in ("Rows", "Columns", "BitsStored", "NumberOfFrames"):
        number = first_number(ds.get(keyword))
        if number is not None:
            kept[keyword] = int(number)
    spacing = ds.get("PixelSpacing")
    if spacing is not None:
        try:
            kept["PixelSpacing"] = [float(v) for v in spacing][:2]
        except (TypeError, ValueError):
            pass
    thickness = first_number(ds.get("SliceThickness"))
    if thickness is not None:
        kept["SliceThickness"] = thickness
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        kept["TransferSyntax"] = syntax.name if _is_standard_uid(str(syntax)) else ""
    center = first_number(ds.get("WindowCenter"))
    width = first_number(ds.get("WindowWidth"))
    if center is not None and width is not None:
        kept["WindowCenter"] = center
        kept["WindowWidth"] = width
    return kept
