"""A Bluetooth glucose meter (GLS 1.0) as a sans-I/O simulator.

It holds stored records (a Glucose Measurement, and its context when the measurement says
one follows) and serves them only through its Record Access Control Point, which it runs as
a state machine:

- A procedure starts with an RACP write and stays *running* until the central confirms the
  RACP indication that ends it (`confirmed`), or the link drops (`disconnected`). `write`
  returns everything the procedure sends at once: each selected record as a 0x2A18
  notification (+ 0x2A34 with the same sequence number when the measurement's "context
  follows" flag is set), then the RACP response indication.
- Any RACP write but "abort" while a procedure runs is refused with the ATT error
  "procedure already in progress"; an RACP write while its indications are not enabled with
  "CCCD improperly configured". GLS 1.0 gives those codes 0x80 / 0x81, the Core Specification
  Supplement's common profile codes are 0xFE / 0xFD: `att_codes` picks the set.
- Notifications go out only for characteristics whose CCCD is enabled, as on a real server;
  CCCD state is per link here (cleared by `disconnected`), so a central subscribes on every
  connection, as bleak does anyway.
- It never deletes a record unless asked with op code 2 (Carebox never asks).

Our reading of the response codes (GLS 1.0 section 3.5; where the text leaves a choice we
follow the common server implementations and say so):

- op code 0, 5, 6 or reserved: op code not supported.
- report / delete / report number with operator null: invalid operator; with a reserved
  operator (7-255): operator not supported.
- all / first / last followed by an operand; a filter missing or truncated; a user facing
  time with an unknown date; within range with min > max: invalid operand.
- a reserved filter type, or user facing time on a meter without `user_facing_time_filter`:
  operand not supported.
- report / delete selecting nothing: no records found (report number answers 0).
- abort with nothing running: abort unsuccessful (there is nothing to abort); abort with an
  operator or an operand: invalid operator / invalid operand.
- a report cut short by `interrupt_after`: procedure not completed, after the records sent.

"First" and "last" are the oldest and newest stored records; the filters compare sequence
numbers as the uint16 the meter stores, so after a wrap past 0xFFFF, ">= 65530" no longer
finds the newest records, exactly what a collector has to cope with.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import ClassVar, Final

from device_drivers.current_time import NO_ADJUSTMENT, AdjustReason, CurrentTime
from device_drivers.device_information import STRING_CHARACTERISTICS, BatteryLevel, SystemId
from device_drivers.errors import MalformedValue
from device_drivers.glucose import (
    ConcentrationUnit,
    GlucoseFeature,
    GlucoseMeasurement,
    GlucoseMeasurementContext,
    GlucoseType,
    SampleLocation,
)
from device_drivers.racp import (
    FILTERED_OPERATORS,
    RECORD_OP_CODES,
    FilterType,
    OpCode,
    Operator,
    Racp,
    ResponseCode,
)
from device_drivers.simulators.base import (
    AttError,
    AttErrorCode,
    CharacteristicSpec,
    DeviceKind,
    Emit,
    Security,
    ServiceSpec,
    SimulatedDevice,
)
from device_drivers.simulators.storing import default_system_id

__all__ = ["AttCodeSet", "GlucoseMeter", "StoredRecord"]

GLUCOSE_SERVICE: Final = 0x1808
MEASUREMENT: Final = 0x2A18
CONTEXT: Final = 0x2A34
FEATURE: Final = 0x2A51
RACP: Final = 0x2A52
CURRENT_TIME: Final = 0x2A2B
_CONTEXT_FOLLOWS: Final = 0x10  # Glucose Measurement flags bit 4


class AttCodeSet(enum.Enum):
    """Which ATT codes the meter uses for its two procedure errors."""

    GLS = "gls"  # GLS 1.0: 0x80 already in progress, 0x81 CCCD improperly configured
    COMMON = "common"  # Core Specification Supplement: 0xFE and 0xFD

    @property
    def in_progress(self) -> AttErrorCode:
        if self is AttCodeSet.GLS:
            return AttErrorCode.GLS_PROCEDURE_ALREADY_IN_PROGRESS
        return AttErrorCode.PROCEDURE_ALREADY_IN_PROGRESS

    @property
    def cccd_improperly_configured(self) -> AttErrorCode:
        if self is AttCodeSet.GLS:
            return AttErrorCode.GLS_CCCD_IMPROPERLY_CONFIGURED
        return AttErrorCode.CCCD_IMPROPERLY_CONFIGURED


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record as the meter stores it: the exact octets it sends. `sequence_number` and
    `user_facing_time` are what its filters compare (None: the octets do not say)."""

    sequence_number: int | None
    measurement: bytes
    context: bytes | None = None
    user_facing_time: datetime | None = None

    @property
    def context_follows(self) -> bool:
        return bool(self.measurement[:1]) and bool(self.measurement[0] & _CONTEXT_FOLLOWS)


_DEFAULT_FEATURE: Final = GlucoseFeature(
    low_battery_detection_during_measurement_supported=True,
    sensor_malfunction_detection_supported=True,
    sensor_strip_insertion_error_detection_supported=True,
    sensor_result_high_low_detection_supported=True,
    general_device_fault_supported=True,
)


@dataclass(slots=True)
class GlucoseMeter(SimulatedDevice):
    """A glucose meter. Records are added with `add_record` (typed; the meter numbers them),
    `add_raw` (octets sent as they are) or `measure` (stamped with the meter's clock)."""

    kind: ClassVar[DeviceKind] = DeviceKind.GLUCOSE
    manufacturer: str = "Carebox Simulated Devices"
    model_number: str = "SIM-GLS-1"
    serial_number: str = "GLS-000001"
    firmware_revision: str = "1.0.0"
    # System ID 0x2A23 as sent (8 octets); None: derived from `address`, as the cuff's and the
    # scale's are, so two simulated meters are two devices upstream
    system_id: bytes | None = None
    battery_level: int = 100
    feature: GlucoseFeature = _DEFAULT_FEATURE
    att_codes: AttCodeSet = AttCodeSet.GLS
    user_facing_time_filter: bool = False  # GLS makes only the sequence number filter mandatory
    interrupt_after: int | None = None  # a report stops after this many records (fault knob)
    next_sequence_number: int = 0
    _records: list[StoredRecord] = field(default_factory=list, init=False)
    _subscribed: set[int] = field(default_factory=set, init=False)
    _pending: Emit | None = field(default=None, init=False)  # the RACP response in flight
    _pending_report: bool = field(default=False, init=False)
    _has_news: bool = field(default=True, init=False)  # switched on, or a record since a report
    _clock_offset: timedelta = field(default=timedelta(0), init=False)
    _adjust_reason: AdjustReason = field(default=NO_ADJUSTMENT, init=False)

    def __post_init__(self) -> None:
        if self.system_id is None:
            self.system_id = bytes(default_system_id(self.address))
        if len(self.system_id) != 8:
            raise ValueError("system_id must be 8 octets (System ID 0x2A23)")
        if not 0 <= self.battery_level <= 100:
            raise ValueError("battery_level must be 0..100 (percent)")
        if not 0 <= self.next_sequence_number <= 0xFFFF:
            raise ValueError("next_sequence_number must be 0..65535")

    # -- the records it holds ----------------------------------------------------------------

    @property
    def records(self) -> tuple[StoredRecord, ...]:
        """The stored records, oldest first."""
        return tuple(self._records)

    @property
    def procedure_running(self) -> bool:
        return self._pending is not None

    def now(self) -> datetime:
        """The meter's own local time: its clock plus whatever a Current Time write set."""
        return self.clock() + self._clock_offset

    def add_record(
        self, measurement: GlucoseMeasurement, context: GlucoseMeasurementContext | None = None
    ) -> int:
        """Store a record under the next sequence number (wrapping after 0xFFFF to 0) and
        return that number; the measurement's "context follows" flag says whether `context`
        is given, whatever `measurement` said."""
        seq = self.next_sequence_number
        measurement = replace(measurement, sequence_number=seq, context_follows=context is not None)
        context_value = None if context is None else bytes(replace(context, sequence_number=seq))
        self._store(
            StoredRecord(seq, bytes(measurement), context_value, measurement.user_facing_time)
        )
        self.next_sequence_number = (seq + 1) & 0xFFFF
        return seq

    def add_raw(self, measurement: bytes, context: bytes | None = None) -> int | None:
        """Store octets sent as they are (a config's `raw` value). The sequence number and
        time the filters use come from the octets when they decode far enough; the next
        `add_record` continues after that sequence number (octets too short to carry one
        take none)."""
        measurement = bytes(measurement)
        seq = int.from_bytes(measurement[1:3], "little") if len(measurement) >= 3 else None
        try:
            stamp = GlucoseMeasurement.from_bytes(measurement).user_facing_time
        except MalformedValue:
            stamp = None
        self._store(
            StoredRecord(seq, measurement, None if context is None else bytes(context), stamp)
        )
        if seq is not None:
            self.next_sequence_number = (seq + 1) & 0xFFFF  # the next record follows it
        return seq

    def measure(
        self,
        concentration: Decimal,
        unit: ConcentrationUnit = ConcentrationUnit.KG_PER_L,
        context: GlucoseMeasurementContext | None = None,
    ) -> int:
        """Take a capillary-plasma finger-stick measurement now, by the meter's clock."""
        return self.add_record(
            GlucoseMeasurement(
                0,
                self.now().replace(microsecond=0),
                time_offset=0,
                concentration=concentration,
                concentration_unit=unit,
                type=GlucoseType.CAPILLARY_PLASMA,
                sample_location=SampleLocation.FINGER,
            ),
            context,
        )

    def _store(self, record: StoredRecord) -> None:
        self._records.append(record)
        self._has_news = True

    # -- SimulatedDevice ---------------------------------------------------------------------

    def services(self) -> tuple[ServiceSpec, ...]:
        def char(uuid: int, *props: str, security: Security = Security.OPEN) -> CharacteristicSpec:
            return CharacteristicSpec(uuid, frozenset(props), security)

        encrypted = Security.ENCRYPTED
        return (
            ServiceSpec(
                GLUCOSE_SERVICE,
                (
                    char(MEASUREMENT, "notify", security=encrypted),
                    char(CONTEXT, "notify", security=encrypted),
                    char(FEATURE, "read"),
                    char(RACP, "write", "indicate", security=encrypted),
                ),
            ),
            ServiceSpec(0x1805, (char(CURRENT_TIME, "read", "write"),)),
            ServiceSpec(
                0x180A,
                tuple(char(uuid, "read") for uuid in (0x2A29, 0x2A24, 0x2A25, 0x2A26, 0x2A23)),
            ),
            ServiceSpec(0x180F, (char(0x2A19, "read"),)),
        )

    def advertised_services(self) -> tuple[int, ...]:
        return (GLUCOSE_SERVICE,)

    def advertising(self) -> bool:
        return self._has_news

    def read(self, uuid: int) -> bytes:
        if uuid == FEATURE:
            return bytes(self.feature)
        if uuid == CURRENT_TIME:
            return bytes(CurrentTime.at(self.now(), self._adjust_reason))
        value = self._information(uuid)
        if value is None:
            raise AttError(AttErrorCode.READ_NOT_PERMITTED, f"{uuid:04X} is not readable")
        return value

    def _information(self, uuid: int) -> bytes | None:
        """Device Information and Battery values, through their codecs."""
        strings = {
            0x2A29: self.manufacturer,
            0x2A24: self.model_number,
            0x2A25: self.serial_number,
            0x2A26: self.firmware_revision,
        }
        if uuid in strings:
            return bytes(STRING_CHARACTERISTICS[uuid](value=strings[uuid]))
        if uuid == 0x2A23:
            assert self.system_id is not None  # set in __post_init__
            return bytes(SystemId.from_bytes(self.system_id))
        if uuid == 0x2A19:
            return bytes(BatteryLevel(battery_level=self.battery_level))
        return None

    def subscribed(self, uuid: int) -> Sequence[Emit]:
        self._subscribed.add(uuid)
        return ()  # a meter sends records only when the RACP asks for them

    def unsubscribed(self, uuid: int) -> None:
        """A CCCD was disabled (not in the base protocol: a radio layer may call it)."""
        self._subscribed.discard(uuid)

    def confirmed(self, emit: Emit) -> None:
        if self._pending is not None and emit == self._pending:
            if self._pending_report:
                self._has_news = False
            self._pending = None
            self._pending_report = False

    def disconnected(self) -> None:
        self._pending = None
        self._pending_report = False
        self._subscribed.clear()

    def write(self, uuid: int, data: bytes) -> Sequence[Emit]:
        data = bytes(data)
        if uuid == CURRENT_TIME:
            self._set_clock(data)
            return ()
        if uuid != RACP:
            raise AttError(AttErrorCode.WRITE_NOT_PERMITTED, f"{uuid:04X} is not writable")
        if RACP not in self._subscribed:
            raise AttError(self.att_codes.cccd_improperly_configured, "RACP indications are off")
        if not data:
            raise AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, "empty RACP value")
        op_code = OpCode(data[0])
        if op_code == OpCode.ABORT_OPERATION:
            return [self._respond(Racp.response(op_code, self._abort(data)))]
        if self._pending is not None:
            raise AttError(self.att_codes.in_progress, "an RACP procedure is running")
        return self._run(op_code, data)

    # -- the RACP state machine --------------------------------------------------------------

    def _respond(self, response: Racp, *, report: bool = False) -> Emit:
        emit = Emit(RACP, bytes(response), indicate=True)
        self._pending = emit
        self._pending_report = report
        return emit

    def _abort(self, data: bytes) -> ResponseCode:
        if self._pending is None:
            return ResponseCode.ABORT_UNSUCCESSFUL
        if len(data) < 2 or data[1] != Operator.NULL:
            return ResponseCode.INVALID_OPERATOR
        if len(data) > 2:
            return ResponseCode.INVALID_OPERAND
        return ResponseCode.SUCCESS  # the running procedure is dropped; its answer is void

    def _run(self, op_code: OpCode, data: bytes) -> list[Emit]:
        if op_code not in RECORD_OP_CODES:
            return [self._respond(Racp.response(op_code, ResponseCode.OP_CODE_NOT_SUPPORTED))]
        try:
            request = Racp.from_bytes(data)
        except MalformedValue:
            code = ResponseCode.INVALID_OPERATOR if len(data) < 2 else ResponseCode.INVALID_OPERAND
            return [self._respond(Racp.response(op_code, code))]
        refusal = self._refusal(request, data)
        if refusal is not None:
            return [self._respond(Racp.response(op_code, refusal))]
        selected = self._select(request)
        if op_code == OpCode.REPORT_NUMBER_OF_STORED_RECORDS:
            return [self._respond(Racp.number_of_records_response(len(selected)))]
        if not selected:
            return [self._respond(Racp.response(op_code, ResponseCode.NO_RECORDS_FOUND))]
        if op_code == OpCode.DELETE_STORED_RECORDS:
            doomed = {id(record) for record in selected}
            self._records = [r for r in self._records if id(r) not in doomed]
            return [self._respond(Racp.response(op_code, ResponseCode.SUCCESS))]
        emits: list[Emit] = []
        sent = selected
        code = ResponseCode.SUCCESS
        if self.interrupt_after is not None and len(selected) > self.interrupt_after:
            sent, code = selected[: self.interrupt_after], ResponseCode.PROCEDURE_NOT_COMPLETED
        for record in sent:
            if MEASUREMENT in self._subscribed:
                emits.append(Emit(MEASUREMENT, self._maybe_corrupt(record.measurement), False))
            context_wanted = record.context_follows and CONTEXT in self._subscribed
            if record.context is not None and context_wanted:
                emits.append(Emit(CONTEXT, record.context, False))
        success = code == ResponseCode.SUCCESS
        emits.append(self._respond(Racp.response(op_code, code), report=success))
        return emits

    def _refusal(self, request: Racp, data: bytes) -> ResponseCode | None:
        operator = request.operator
        if operator == Operator.NULL:
            return ResponseCode.INVALID_OPERATOR
        if operator.name.startswith("RESERVED_"):
            return ResponseCode.OPERATOR_NOT_SUPPORTED
        if operator in FILTERED_OPERATORS:
            filter_type = request.filter_type
            if filter_type == FilterType.USER_FACING_TIME and not self.user_facing_time_filter:
                return ResponseCode.OPERAND_NOT_SUPPORTED
            if filter_type not in (FilterType.SEQUENCE_NUMBER, FilterType.USER_FACING_TIME):
                return ResponseCode.OPERAND_NOT_SUPPORTED
            if operator == Operator.WITHIN_RANGE_OF and _after(request.min, request.max):
                return ResponseCode.INVALID_OPERAND
        if request.extra_octets(data):
            return ResponseCode.INVALID_OPERAND
        return None

    def _select(self, request: Racp) -> list[StoredRecord]:
        operator = request.operator
        if operator == Operator.ALL_RECORDS:
            return list(self._records)
        if operator == Operator.FIRST_RECORD:
            return self._records[:1]
        if operator == Operator.LAST_RECORD:
            return self._records[-1:]
        by_time = request.filter_type == FilterType.USER_FACING_TIME
        low, high = request.min, request.max
        selected = []
        for record in self._records:
            key = record.user_facing_time if by_time else record.sequence_number
            if key is None:
                continue
            if low is not None and _after(low, key):
                continue
            if high is not None and _after(key, high):
                continue
            selected.append(record)
        return selected

    def _set_clock(self, data: bytes) -> None:
        try:
            value = CurrentTime.from_bytes(data)
        except MalformedValue as exc:
            raise AttError(AttErrorCode.OUT_OF_RANGE, exc.reason) from None
        if value.timestamp is None:
            raise AttError(AttErrorCode.OUT_OF_RANGE, "a clock cannot be set to an unknown date")
        self._clock_offset = value.timestamp - self.clock()
        self._adjust_reason = value.adjust_reason


def _after(a: int | datetime | None, b: int | datetime | None) -> bool:
    """a > b for two bounds of the same filter type (a None bound is never after)."""
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a > b
    if isinstance(a, int) and isinstance(b, int):
        return a > b
    return False
