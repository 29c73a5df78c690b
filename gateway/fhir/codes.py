"""Code systems, codes and units of the mapping (notes/FHIR.md sections 1-3, 6, 7, 11).

Every number here is a 32-bit MDC code (partition × 65536 + term), as FHIR always uses it.
Tables only: no logic lives here, so a reviewer can check them against the guides line by line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from device_drivers.ieee11073 import Special

# --- systems --------------------------------------------------------------------------------
MDC: Final = "urn:iso:std:iso:11073:10101"
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
PHD_CATEGORY_SYSTEM: Final = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"
OBSERVATION_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
ASN1_TO_HL7: Final = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"
DATA_ABSENT_REASON: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
DATA_ABSENT_EXTENSION: Final = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
"""On a primitive the profile requires but the device never said (its `_name` element)."""
PHD_IDENTIFIER_SYSTEM: Final = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBaseObservation"
CONTINUA_DEVICE_IDENTIFIERS: Final = (
    "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers"
)
SYSID_SYSTEM: Final = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
BTMAC_SYSTEM: Final = "http://hl7.org/fhir/sid/eui-48/bluetooth"
URI_SYSTEM: Final = "urn:ietf:rfc:3986"
"""Identifier system whose values are themselves URIs: the coincident-timestamp observation's
identifier (the IG gives it none; ours makes a resent Bundle harmless, FHIR.md section 12)."""

GATEWAY_DEVICE_EXTENSION: Final = (
    "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
)
COINCIDENT_TIMESTAMP_EXTENSION: Final = (
    "http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"
)

_PROFILE_BASE: Final = "http://hl7.org/fhir/uv/phd/StructureDefinition/"
PROFILE_NUMERIC: Final = _PROFILE_BASE + "PhdNumericObservation"
PROFILE_COMPOUND: Final = _PROFILE_BASE + "PhdCompoundNumericObservation"
PROFILE_BITS: Final = _PROFILE_BASE + "PhdBitsEnumerationObservation"
PROFILE_CODED: Final = _PROFILE_BASE + "PhdCodedEnumerationObservation"
PROFILE_COINCIDENT: Final = _PROFILE_BASE + "PhdCoincidentTimeStampObservation"
PROFILE_PHD_DEVICE: Final = _PROFILE_BASE + "PhdDevice"
PROFILE_PHG_DEVICE: Final = _PROFILE_BASE + "PhgDevice"


@dataclass(frozen=True, slots=True)
class Code:
    """One MDC code, with the LOINC code that the R4 vital-signs profiles want beside it."""

    mdc: int
    reference_id: str | None = None
    loinc: str | None = None
    vital_sign: bool = False


# --- blood pressure (0x2A35) ----------------------------------------------------------------
BP_PANEL: Final = Code(150020, "MDC_PRESS_BLD_NONINV", "85354-9", vital_sign=True)
BP_SYSTOLIC: Final = Code(150021, "MDC_PRESS_BLD_NONINV_SYS", "8480-6")
BP_DIASTOLIC: Final = Code(150022, "MDC_PRESS_BLD_NONINV_DIA", "8462-4")
BP_MEAN: Final = Code(150023, "MDC_PRESS_BLD_NONINV_MEAN", "8478-0")
PULSE_RATE: Final = Code(149546, "MDC_PULS_RATE_NON_INV", "8867-4", vital_sign=True)
BP_STATUS: Final = Code(8410608, "MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS")

# --- glucose (0x2A18, 0x2A34) ---------------------------------------------------------------
GLUCOSE_SENSOR_STATUS: Final = Code(8417752, "MDC_GLU_METER_DEV_STATUS")
GLUCOSE_SAMPLE_LOCATION: Final = Code(8417844, "MDC_CTXT_GLU_SAMPLELOCATION")
GLUCOSE_CONTROL_SOLUTION_TYPE: Final = 10
GLUCOSE_CONTROL_SOLUTION_LOCATION: Final = 4


@dataclass(frozen=True, slots=True)
class GlucoseCode:
    """Glucose by the BLE "type" nibble: MDC code and the LOINC pair (mg/dL, mmol/L)."""

    mdc: int
    reference_id: str | None
    loinc_mass: str | None
    loinc_molar: str | None


GLUCOSE_GENERIC: Final = GlucoseCode(160020, "MDC_CONC_GLU_GEN", "2339-0", "15074-8")
GLUCOSE_BY_TYPE: Final[dict[int, GlucoseCode]] = {
    1: GlucoseCode(160184, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", "2339-0", "15074-8"),
    2: GlucoseCode(160188, "MDC_CONC_GLU_CAPILLARY_PLASMA", "2345-7", "14749-6"),
    3: GlucoseCode(160192, None, "2339-0", "15074-8"),
    4: GlucoseCode(160196, None, "2345-7", "14749-6"),
    5: GlucoseCode(160200, None, "2339-0", "15074-8"),
    6: GlucoseCode(160204, None, "2345-7", "14749-6"),
    7: GlucoseCode(160364, None, "2339-0", "15074-8"),
    8: GlucoseCode(160368, "MDC_CONC_GLU_UNDETERMINED_PLASMA", "2345-7", "14749-6"),
    9: GlucoseCode(160212, "MDC_CONC_GLU_ISF", "99504-3", "105272-9"),
    10: GlucoseCode(160208, "MDC_CONC_GLU_CONTROL", None, None),
}
"""Types 0 and 11..15 are reserved in the Glucose Service: they map to the generic code."""

GLUCOSE_LOCATION_VALUES: Final[dict[int, int]] = {
    1: 8417848,  # finger
    2: 8417852,  # alternate site test
    3: 8417856,  # earlobe
    4: 8417860,  # control solution
}
"""Location 0xF ("not available") and reserved values produce no observation."""

GLUCOSE_SENSOR_BITS: Final[dict[int, str]] = {
    0: "device-battery-low",
    1: "sensor-malfunction",
    2: "sensor-sample-size-insufficient",
    3: "sensor-strip-insertion",
    4: "sensor-strip-type-incorrect",
    5: "sensor-result-too-high",
    6: "sensor-result-too-low",
    7: "sensor-temp-too-high",
    8: "sensor-temp-too-low",
    9: "sensor-read-interrupt",
    10: "device-gen-fault",
}
"""BLE Sensor Status Annunciation bit -> the 8417752.<bit> meaning (same order by meaning),
displayed as the IG's ASN1ToHL7 code system names them (a required binding: another display
fails validation).
Bit 11 (time fault) has no code in the IG: it is not reported as a status bit."""
GLUCOSE_TIME_FAULT_BIT: Final = 11

# Glucose context (0x2A34): the coded enumerations, BLE value -> MDC value code.
CONTEXT_MEAL: Final = Code(8417864)
MEAL_VALUES: Final[dict[int, int]] = {1: 8417868, 2: 8417872, 3: 8417876, 4: 8417880}
"""BLE meal 5 ("bedtime") has no MDC code: it is omitted rather than guessed."""
CONTEXT_TESTER: Final = Code(8417884)
TESTER_VALUES: Final[dict[int, int]] = {1: 8417888, 2: 8417892, 3: 8417896}
CONTEXT_HEALTH: Final = Code(8417820)
HEALTH_VALUES: Final[dict[int, int]] = {1: 8417824, 2: 8417828, 3: 8417832, 4: 8417836, 5: 8417840}
CONTEXT_CARBOHYDRATE: Final = Code(8417764)
CARBOHYDRATE_BY_ID: Final[dict[int, int]] = {
    1: 8417768,  # breakfast
    2: 8417772,  # lunch
    3: 8417776,  # dinner
    4: 8417780,  # snack
    5: 8417784,  # drink
    6: 8417788,  # supper
    7: 8417792,  # brunch
}
"""The carbohydrate observation is coded by the meal it was taken with (grams), 8417764 when
the meter gives an id without a code."""
CONTEXT_HBA1C: Final = Code(160220)
CONTEXT_EXERCISE: Final = Code(8417760)
"""Exercise intensity (%), over the exercise's duration (`effectivePeriod`, the IG's mapping
of a measurement duration)."""
CONTEXT_MEDICATION: Final = Code(8417796)
MEDICATION_BY_ID: Final[dict[int, int]] = {
    1: 8417800,  # rapid-acting insulin
    2: 8417804,  # short-acting insulin
    3: 8417808,  # intermediate-acting insulin
    4: 8417812,  # long-acting insulin
    5: 8417816,  # pre-mixed insulin
}
"""The medication observation is coded by its kind, as carbohydrates are by meal (mg or mL),
8417796 when the meter gives an id without a code."""

# --- weight scale (0x2A9D) and body composition (0x2A9C) ------------------------------------
BODY_WEIGHT: Final = Code(188736, "MDC_MASS_BODY_ACTUAL", "29463-7", vital_sign=True)
BODY_HEIGHT: Final = Code(188740, "MDC_LEN_BODY_ACTUAL", "8302-2", vital_sign=True)
BMI: Final = Code(188752, "MDC_RATIO_MASS_BODY_LEN_SQ", "39156-5", vital_sign=True)
BODY_FAT: Final = Code(188748, "MDC_BODY_FAT", "41982-0")
FAT_FREE_MASS: Final = Code(188756)
SOFT_LEAN_MASS: Final = Code(188760)
BODY_WATER: Final = Code(188764)
BASAL_METABOLISM: Final = Code(188768)
# Muscle %, muscle mass and impedance have no code established in the guides: not mapped.

# --- coincident timestamp and devices -------------------------------------------------------
TIME_ABS: Final = Code(67975, "MDC_ATTR_TIME_ABS")
TIME_SYNC_PROTOCOL: Final = Code(68220, "MDC_TIME_SYNC_PROTOCOL")
TIME_SYNC_NONE: Final = Code(532224, "MDC_TIME_SYNC_NONE")
MDS_SIMPLE: Final = Code(65573, "MDC_MOC_VMS_MDS_SIMP")
MDS_AHD: Final = Code(531981, "MDC_MOC_VMS_MDS_AHD")
VERSION_HW: Final = Code(531974)
VERSION_SW: Final = Code(531975)
VERSION_FW: Final = Code(531976)
SPECIALIZATION_BY_CHARACTERISTIC: Final[dict[int, Code]] = {
    0x2A35: Code(528391),  # blood pressure monitor
    0x2A9D: Code(528399),  # weight scale
    0x2A18: Code(528401),  # glucose meter
    0x2A9C: Code(528404),  # body composition analyser
}
SPECIALIZATION_GENERIC: Final = Code(528457)


class TimeSync(enum.Enum):
    """How the gateway's clock is synchronized (PhgDevice property 68220): value = MDC code."""

    SNTP_V4_RFC4330 = 532228  # systemd-timesyncd
    NTP_V4 = 532226  # chrony, ntpd
    SNTP_V4_RFC2030 = 532227
    OTHER = 532236


# Displays (MDC reference ids) are optional in FHIR; they are given only where the guides
# print them, since a wrong display is worse than none.

# --- special values and units ---------------------------------------------------------------
ABSENT_REASON: Final[dict[Special, str]] = {
    Special.NAN: "not-a-number",
    Special.POSITIVE_INFINITY: "positive-infinity",
    Special.NEGATIVE_INFINITY: "negative-infinity",
    Special.NRES: "error",
    Special.RESERVED: "error",
}


@dataclass(frozen=True, slots=True)
class Unit:
    """A UCUM unit: `code` goes in Quantity.code, `display` in Quantity.unit."""

    code: str
    display: str


MM_HG: Final = Unit("mm[Hg]", "mmHg")
PER_MINUTE: Final = Unit("/min", "/min")
MG_PER_DL: Final = Unit("mg/dL", "mg/dL")
MMOL_PER_L: Final = Unit("mmol/L", "mmol/L")
KG: Final = Unit("kg", "kg")
POUND: Final = Unit("[lb_av]", "lb")
CM: Final = Unit("cm", "cm")
INCH: Final = Unit("[in_i]", "in")
KG_PER_M2: Final = Unit("kg/m2", "kg/m2")
PERCENT: Final = Unit("%", "%")
KJ: Final = Unit("kJ", "kJ")
GRAM: Final = Unit("g", "g")
MILLIGRAM: Final = Unit("mg", "mg")
MILLILITRE: Final = Unit("mL", "mL")

# --- ANS "Mesures de santé" destination (mes.py; FHIR.md section 14) ------------------------
# Canonicals of ans.fhir.fr.mesures 3.1.x (ansforge/IG-fhir-mesures-de-sante, input/fsh).
_MES_BASE: Final = "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/"
MES_PROFILE_BUNDLE: Final = _MES_BASE + "mesures-bundle-flux-alimentation"
MES_PROFILE_BP: Final = _MES_BASE + "mesures-fr-observation-bp"
MES_PROFILE_HEARTRATE: Final = _MES_BASE + "mesures-fr-observation-heartrate"
MES_PROFILE_BODY_WEIGHT: Final = _MES_BASE + "mesures-fr-observation-body-weight"
MES_PROFILE_BODY_HEIGHT: Final = _MES_BASE + "mesures-fr-observation-bodyheight"
MES_PROFILE_GLUCOSE: Final = _MES_BASE + "mesures-observation-glucose"
MES_MOMENT_EXTENSION: Final = _MES_BASE + "mesures-moment-of-measurement"
MES_ORIGINAL_DATA_EXTENSION: Final = _MES_BASE + "mesures-original-data"
"""3.1.x name; the development branch renames it (mesures-original-value): re-check on upgrade."""

NOS_LOINC: Final = "https://mos.esante.gouv.fr/NOS/TRE_A04-Loinc/FHIR/TRE-A04-Loinc"
"""LOINC as the French terminology server (NOS) publishes it: the system of the glucose value
sets J154 (type) and J157 (moment)."""
MES_GLUCOSE_LOINC: Final = "2345-7"
"""The one blood-glucose code of J154 ("glucose sanguin"), whatever the sample type."""
CONTINUA_DEVICE_IDENTIFIERS_STU1: Final = (
    "http://hl7.org/fhir/uv/phd/CodeSystem/ContinuaDeviceIdentifiers"
)

MES_MOMENT_BY_MEAL: Final[dict[int, str]] = {
    8417868: "88365-2",  # preprandial → before meal
    8417872: "16915-1",  # postprandial → post prandial
    8417876: "53049-3",  # fasting → fasting
    8417880: "LA46-8",  # casual → other
}
"""BLE meal context (its MDC value code) → J157 moment of measurement (LOINC, NOS system)."""
MES_MOMENT_OTHER: Final = "LA46-8"
"""J157 "other": a glucose without meal context, or with BLE "bedtime" (no code of its own)."""

MG_PER_DL_PER_MMOL_PER_L: Final = Decimal("18.0156")
"""mmol/L → mg/dL for glucose: molar mass 180.156 g/mol. Frozen: changing it changes values
already sent."""
KG_PER_POUND: Final = Decimal("0.45359237")  # exact, international avoirdupois pound
CM_PER_INCH: Final = Decimal("2.54")  # exact, international inch
