"""A simulated weight scale with body composition: Weight Scale 0x181D (2A9D indicate, 2A9E
read) and Body Composition 0x181B (2A9C indicate, 2A9B read), plus Current Time, Device
Information and Battery from `StoringDevice`.

Stored measurements carry their characteristic: a weight goes out on 2A9D when the central
enables its indications, a body composition record on 2A9C when it enables those; each is
forgotten only once its indication is confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from device_drivers.body_composition import BodyCompositionFeature, BodyCompositionMeasurement
from device_drivers.simulators.base import (
    CharacteristicSpec,
    DeviceKind,
    Emit,
    Security,
    ServiceSpec,
)
from device_drivers.simulators.storing import StoringDevice
from device_drivers.weight_scale import (
    HeightResolution,
    WeightMeasurement,
    WeightResolution,
    WeightScaleFeature,
)

__all__ = ["WeightScale"]

WEIGHT_MEASUREMENT: Final = 0x2A9D
BODY_COMPOSITION_MEASUREMENT: Final = 0x2A9C
_MEASUREMENTS: Final = (WEIGHT_MEASUREMENT, BODY_COMPOSITION_MEASUREMENT)
_READ: Final = frozenset({"read"})
_INDICATE: Final = frozenset({"indicate"})


@dataclass(slots=True, kw_only=True)
class WeightScale(StoringDevice):
    """A bathroom scale. `add(measurement)` stores a `WeightMeasurement` (sent on 2A9D), a
    `BodyCompositionMeasurement` (2A9C), or raw bytes sent as they are on `uuid` (2A9D unless
    told otherwise), and makes the scale advertise."""

    kind = DeviceKind.WEIGHT_SCALE

    model: str = "WS-SIM"
    serial: str = "WS-000001"
    features: WeightScaleFeature = field(
        default_factory=lambda: WeightScaleFeature(
            time_stamp_supported=True,
            multiple_users_supported=True,
            bmi_supported=True,
            weight_measurement_resolution=WeightResolution.KG_0_05_LB_0_1,
            height_measurement_resolution=HeightResolution.M_0_001_IN_0_1,
        )
    )
    body_composition_features: BodyCompositionFeature = field(
        default_factory=lambda: BodyCompositionFeature(
            time_stamp_supported=True,
            multiple_users_supported=True,
            basal_metabolism_supported=True,
            muscle_percentage_supported=True,
            impedance_supported=True,
            weight_supported=True,
            mass_measurement_resolution=WeightResolution.KG_0_05_LB_0_1,
        )
    )

    def add(
        self,
        measurement: WeightMeasurement | BodyCompositionMeasurement | bytes,
        *,
        uuid: int | None = None,
    ) -> None:
        """Store one measurement (typed values are encoded now: `UnencodableValue` here)."""
        if isinstance(measurement, WeightMeasurement | BodyCompositionMeasurement):
            target = measurement.UUID
            if uuid is not None and uuid != target:
                raise ValueError(f"a {type(measurement).__name__} goes out on {target:04X}")
        else:
            target = WEIGHT_MEASUREMENT if uuid is None else uuid
        if target not in _MEASUREMENTS:
            raise ValueError(f"{target:04X} is not a measurement characteristic of this scale")
        self._store(target, bytes(measurement))

    def services(self) -> tuple[ServiceSpec, ...]:
        weight = ServiceSpec(
            0x181D,
            (
                CharacteristicSpec(WEIGHT_MEASUREMENT, _INDICATE, Security.ENCRYPTED),
                CharacteristicSpec(0x2A9E, _READ),
            ),
        )
        body_composition = ServiceSpec(
            0x181B,
            (
                CharacteristicSpec(BODY_COMPOSITION_MEASUREMENT, _INDICATE, Security.ENCRYPTED),
                CharacteristicSpec(0x2A9B, _READ),
            ),
        )
        return (weight, body_composition, *self._common_services())

    def advertised_services(self) -> tuple[int, ...]:
        return (0x181D, 0x181B)

    def read(self, uuid: int) -> bytes:
        if uuid == 0x2A9E:
            return bytes(self.features)
        if uuid == 0x2A9B:
            return bytes(self.body_composition_features)
        return self._read_common(uuid)

    def write(self, uuid: int, data: bytes) -> list[Emit]:
        return self._write_common(uuid, data)

    def subscribed(self, uuid: int) -> list[Emit]:
        if uuid in _MEASUREMENTS:
            return self._indications(uuid)
        return []
