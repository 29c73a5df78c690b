"""`Reading`: one measurement as the gateway captured it, and its identity.

Three times per reading (LESSONS.md L6.1): the device's own stamp, kept verbatim inside
`value`; the gateway's receive time `received_at` (UTC, trusted or not); and the corrected UTC
time, which only the FHIR mapping computes, from `device_clock_offset_s`.

The raw bytes are the record: every typed view is decoded from them, so a later, better
decoder reads old readings better, and nothing the device said is lost to a mapping.
"""

from __future__ import annotations

import functools
import hashlib
from binascii import hexlify
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from device_drivers.blood_pressure import peek_time_stamp_octets, peek_timestamp
from device_drivers.codec import Codec, decode
from device_drivers.errors import MalformedValue

__all__ = ["IDENTITY_BYTES", "MEASUREMENT_CHARACTERISTICS", "PHD_EPOCH", "Reading"]

MEASUREMENT_CHARACTERISTICS: Final = frozenset({0x2A35, 0x2A18, 0x2A9D, 0x2A9C})
BLOOD_PRESSURE_MEASUREMENT: Final = 0x2A35
"""The characteristics whose values are readings (0x2A36 live cuff pressure never is, L5.4)."""

IDENTITY_BYTES: Final = 16  # an identity is this many bytes of SHA-256, as 32 hex digits
PHD_EPOCH: Final = datetime(2000, 1, 1)  # noqa: DTZ001 - PHD IG counts device local time from here
_PHD_EPOCH_ORDINAL: Final = PHD_EPOCH.toordinal()
_DAY_S: Final = 86_400
# "HH:", "MM:" and "SS|" of a time stamp's text in the identity material, by value
_TWO_DIGITS_COLON: Final = tuple(b"%02d:" % n for n in range(60))
_TWO_DIGITS_BAR: Final = tuple(b"%02d|" % n for n in range(60))
_DAYS_KEPT: Final = 1024  # dates in `_days`: a box's devices measure on few days at a time
_days: dict[bytes, tuple[bytes, int]] = {}


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement: raw bytes plus what the gateway knew when it received them.

    `device` is the device's identity address, upper case (``"C0:11:22:33:44:55"``).
    `context` is the Glucose Measurement Context (0x2A34) value joined to a 0x2A18 reading by
    sequence number. `device_clock_offset_s` is the device clock minus the gateway clock as read
    at the connection that delivered this reading (None when the device has no clock to read).
    `boot_id` and `monotonic_ns` (the kernel's boot id and its monotonic clock at receipt) are
    kept for a reading received while the wall clock was not trusted: once it is, in the same
    boot, the true receive time follows from them (LESSONS L7.2).
    """

    device: str
    characteristic: int
    value: bytes
    received_at: datetime
    clock_trusted: bool
    context: bytes | None = None
    device_clock_offset_s: float | None = None
    boot_id: str | None = None
    monotonic_ns: int | None = None

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware (UTC)")

    def measurement(self) -> Codec:
        """The typed value; `MalformedValue` if the bytes do not decode."""
        return decode(self.characteristic, self.value)

    def _decoded(self) -> Codec | None:
        try:
            return self.measurement()
        except MalformedValue:
            return None

    def device_timestamp(self) -> datetime | None:
        """The device's own time for this measurement, as it sent it (naive local time).

        Glucose: base time plus the time offset field, as the Glucose Service defines it.
        """
        return _device_timestamp(self._decoded())

    @staticmethod
    def timestamp_of(measurement: Codec) -> datetime | None:
        """`device_timestamp()` from a measurement already decoded from the reading."""
        return _device_timestamp(measurement)

    def sequence_number(self) -> int | None:
        seq = getattr(self._decoded(), "sequence_number", None)
        return seq if isinstance(seq, int) else None

    def capture_keys(self) -> tuple[str, str]:
        """`(identity(), phd_timestamp_part())` from one decode: what the store computes once at
        capture. `capture_key_values` is the same in binary, for the store's hot path."""
        digest, seconds = self.capture_key_values()
        return digest.hex(), str(seconds)

    def capture_key_values(self) -> tuple[bytes, int | str]:
        """`capture_keys` as the identity's 16 bytes (its hex is `identity()`) and the PHD
        timestamp part: its seconds as an int when that is all of it (their decimal text is
        `phd_timestamp_part()`), else its text (an offset or microseconds after them). A
        blood-pressure value, which has no sequence number, needs only its time stamp: read
        without decoding
        the rest when that is certain to agree."""
        if self.characteristic == BLOOD_PRESSURE_MEASUREMENT:
            value = self.value
            octets = peek_time_stamp_octets(value)
            # the text and seconds `_identity` and `_phd_seconds` would derive from the stamp's
            # datetime, from its integers: a datetime and its isoformat cost more than the rest
            # of the capture (test_capture_keys pins the two paths together). Bytes only: the
            # date octets key a dict, and a bytearray's slice is unhashable
            if octets is not None and isinstance(octets, bytes):
                date_octets = octets[:4]
                day = _days.get(date_octets) or _day(date_octets)
                hour, minute, second = octets[4], octets[5], octets[6]
                if day is not None and hour < 24 and minute < 60 and second < 60:
                    day_text, day_s = day
                    material = b"".join(
                        (
                            _stamp_head(self.device),
                            day_text,
                            _TWO_DIGITS_COLON[hour],
                            _TWO_DIGITS_COLON[minute],
                            _TWO_DIGITS_BAR[second],
                            hexlify(value),
                        )
                    )
                    return (
                        hashlib.sha256(material).digest()[:IDENTITY_BYTES],
                        day_s + hour * 3600 + minute * 60 + second,
                    )
            certain, stamp = peek_timestamp(value)
            if certain:
                return self._identity(None, stamp), self._phd_part(stamp)
        m = self._decoded()
        stamp = _device_timestamp(m)
        seq = getattr(m, "sequence_number", None)
        identity = self._identity(seq if isinstance(seq, int) else None, stamp)
        offset = getattr(m, "time_offset", None)
        if stamp is not None and isinstance(offset, int) and offset:
            # The offset the meter reported, appended in its units (minutes) as the IG's
            # identifier rule says: two records whose base time plus offset agree (a clock
            # turned back an hour for winter time) stay two Observations.
            return identity, f"{self._phd_seconds(stamp)}{offset:+d}"
        return identity, self._phd_part(stamp)

    def identity(self) -> str:
        """A stable identifier from what the reading is: device, characteristic, sequence number
        or device time (the receive time when it has neither, or its bytes do not decode, so two
        such readings stay two), and value. The store computes it once at capture and keeps it;
        never recompute it for a stored reading."""
        return self.capture_keys()[0]

    def phd_timestamp_part(self) -> str:
        """The PHD IG dedup identifier's timestamp part (FHIR.md section 10): whole seconds since
        2000-01-01T00:00:00 of the device's local time as sent, BLE Date Time having 1 s
        resolution; a glucose record's non-zero time offset (minutes) appended signed, as the
        IG appends a reported offset ("848473200-60"); the receive time (UTC) to the
        microsecond, the gateway clock's resolution, for a reading without a device time
        ("849164400.250000")."""
        return self.capture_keys()[1]

    def _identity(self, seq: int | None, stamp: datetime | None) -> bytes:
        """The first 16 bytes of SHA-256 over the reading's description; as hex, the identity."""
        if seq is not None:
            when = f"seq:{seq}"
        elif stamp is not None:
            when = f"ts:{stamp.isoformat()}"
        else:
            when = f"rx:{self.received_at.astimezone(UTC).isoformat()}"
        material = f"{_described(self.device, self.characteristic)}{when}|{self.value.hex()}"
        return hashlib.sha256(material.encode()).digest()[:IDENTITY_BYTES]

    def _phd_part(self, stamp: datetime | None) -> int | str:
        """The seconds of a device time; without one, the receive time at the gateway clock's
        resolution, microseconds ("849164400.250000"): readings a device sends in one burst
        arrive within a second, and at whole seconds they would share an identifier."""
        if stamp is not None:
            return self._phd_seconds(stamp)
        return f"{self._phd_seconds(None)}.{self.received_at.microsecond:06d}"

    def _phd_seconds(self, stamp: datetime | None) -> int:
        if stamp is None:
            stamp = self.received_at.astimezone(UTC).replace(tzinfo=None)
        return int((stamp - PHD_EPOCH).total_seconds())


@functools.lru_cache(maxsize=64)
def _described(device: str, characteristic: int) -> str:
    """The identity material's first fields: a box has few devices, and this runs at every
    capture."""
    return f"{device.upper()}|{characteristic:04X}|"


@functools.lru_cache(maxsize=64)
def _stamp_head(device: str) -> bytes:
    """The identity material of a time-stamped blood-pressure reading up to the stamp."""
    return f"{_described(device, BLOOD_PRESSURE_MEASUREMENT)}ts:".encode()


def _day(octets: bytes) -> tuple[bytes, int] | None:
    """For a Date Time's first four octets (year u16, month, day): the date as the stamp's
    `isoformat()` begins it, with the "T", and the PHD seconds at its midnight; None for a date
    `peek_timestamp` refuses (the decoder then decides). Kept in `_days`."""
    year = octets[0] | octets[1] << 8
    if not 1582 <= year <= 9999:
        return None
    try:
        day = date(year, octets[2], octets[3])
    except ValueError:
        return None
    if len(_days) >= _DAYS_KEPT:
        _days.clear()
    found = _days[octets] = (
        f"{day.isoformat()}T".encode(),
        (day.toordinal() - _PHD_EPOCH_ORDINAL) * _DAY_S,
    )
    return found


def _device_timestamp(m: Codec | None) -> datetime | None:
    """The device time a decoded measurement carries (see `Reading.device_timestamp`); None
    when base time plus offset falls outside year 1-9999 (a meter clock near 9999-12-31): a
    time no datetime can hold is no device time, so the receive time stands in for it, as for
    a reading without one, rather than the reading being refused."""
    stamp = getattr(m, "timestamp", None) or getattr(m, "base_time", None)
    if not isinstance(stamp, datetime):
        return None
    offset = getattr(m, "time_offset", None)
    if isinstance(offset, int):
        try:
            stamp += timedelta(minutes=offset)
        except OverflowError:
            return None
    return stamp
