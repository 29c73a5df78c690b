"""A simulated blood pressure monitor (BLS 0x1810), built on `StoringDevice` (storing.py).

How a real cuff behaves, and so this one: it measures, stores the result, advertises in a
short burst, and when a central connects and enables indications on the measurement
characteristic it indicates every stored measurement, oldest first. It forgets one only when
the central confirms that indication; a link lost before the confirmation leaves it stored
and it is indicated again on the next connection (the gateway deduplicates by identity).
Intermediate Cuff Pressure (0x2A36) is live cuff pressure during a measurement: notified,
never stored, never a reading.

The device keeps its own clock: `device_time()` is the injected `clock()` plus
`clock_offset`, which a Current Time write (0x2A2B) sets, as a real device sets its RTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from device_drivers.blood_pressure import (
    BloodPressureFeature,
    BloodPressureMeasurement,
    IntermediateCuffPressure,
)
from device_drivers.simulators.base import (
    CharacteristicSpec,
    DeviceKind,
    Emit,
    Security,
    ServiceSpec,
)
from device_drivers.simulators.storing import StoringDevice

__all__ = ["BloodPressureMonitor", "StoringDevice"]


@dataclass(slots=True, kw_only=True)
class BloodPressureMonitor(StoringDevice):
    """A cuff: 0x1810 (2A35 indicate over an encrypted link, 2A36 notify, 2A49 read) plus
    Current Time, Device Information and Battery.

    `add(measurement)` stores a measurement (typed, or raw bytes sent as they are) and makes
    the cuff advertise. `cuff_pressures` are the live values notified when the central
    subscribes to 2A36 (a measurement in progress)."""

    kind = DeviceKind.BLOOD_PRESSURE

    model: str = "BPM-SIM"
    serial: str = "BPM-000001"
    features: BloodPressureFeature = field(
        default_factory=lambda: BloodPressureFeature(
            body_movement_detection_support=True,
            cuff_fit_detection_support=True,
            irregular_pulse_detection_support=True,
            pulse_rate_range_detection_support=True,
            measurement_position_detection_support=True,
        )
    )
    cuff_pressures: list[IntermediateCuffPressure] = field(default_factory=list)

    def add(self, measurement: BloodPressureMeasurement | bytes) -> None:
        """Store one measurement; typed values are encoded now, so a value the wire cannot
        carry fails here (`UnencodableValue`), not mid-transfer."""
        self._store(0x2A35, bytes(measurement))

    def services(self) -> tuple[ServiceSpec, ...]:
        blood_pressure = ServiceSpec(
            0x1810,
            (
                CharacteristicSpec(0x2A35, frozenset({"indicate"}), Security.ENCRYPTED),
                CharacteristicSpec(0x2A36, frozenset({"notify"})),
                CharacteristicSpec(0x2A49, frozenset({"read"})),
            ),
        )
        return (blood_pressure, *self._common_services())

    def advertised_services(self) -> tuple[int, ...]:
        return (0x1810,)

    def read(self, uuid: int) -> bytes:
        if uuid == 0x2A49:
            return bytes(self.features)
        return self._read_common(uuid)

    def write(self, uuid: int, data: bytes) -> list[Emit]:
        return self._write_common(uuid, data)

    def subscribed(self, uuid: int) -> list[Emit]:
        if uuid == 0x2A35:
            return self._indications(0x2A35)
        if uuid == 0x2A36:
            return [Emit(0x2A36, bytes(p), indicate=False) for p in self.cuff_pressures]
        return []
