"""One connection's work with one health device, per device class (LESSONS.md L4-L8).

Order on every connection, whatever the class:
1. make sure the link is encrypted: read the health service's readable characteristic (its
   Feature); on BlueZ that read raises the link's security from the stored bond, and a refusal
   (ATT 0x05/0x0F, "Not paired", authentication errors) is `NeedsRepairing` - we never pair
   here, only the technician does (L4.3);
2. Device Information, once per device (the registry caches it);
3. Current Time: read it and record the device's offset from the gateway clock; write it only
   when the device allows writes and the gateway clock is trusted, then read it back (L6.2-L7.3);
4. Battery level when there is one;
5. the class's procedure:
   - blood pressure / weight scale: subscribe to the measurement characteristic(s); stored
     measurements arrive as indications right after the CCCD write; each is committed as it
     comes; the session ends when the device disconnects or stays quiet for `linger_s`;
   - glucose: subscribe to 0x2A18, 0x2A34 and the RACP, ask for "records with sequence number
     >= cursor + 1" (all records when there is no cursor), join each measurement with the
     context that follows it, commit batches with the cursor in the same transaction, end on the
     RACP response (success or "no records found"); never ask the meter to delete (L8.1).
A value that does not decode is kept and the session goes on (L8.2): its bytes sealed in the
store like a reading's (`Store.record_malformed`), with a `malformed_value` event that names the
device, the characteristic, the length, the offset, a reason in field names and lengths
(`malformed_detail`) and the sealed record's id, never the bytes nor anything read from them:
events are stored and published in plain JSON (DESIGN.md: no health value on `/events`). The
hex goes to the DEBUG log only. A link lost mid-transfer commits every complete record received; the
next connection resumes at the cursor.

Notifications arrive through bleak's synchronous callback into one inbox per session, which the
session drains as an async stream; a disconnect puts `LINK_LOST` in the same inbox, so every wait
is one bounded `queue.get()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_16

from device_drivers.codec import decode
from device_drivers.current_time import CurrentTime
from device_drivers.device_information import SystemId
from device_drivers.errors import MalformedValue, UnknownCharacteristic
from device_drivers.reading import Reading
from device_drivers.weight_scale import WeightScaleFeature
from gateway.ble import uuids
from gateway.ble.errors import NeedsRepairing, ProcedureFailed
from gateway.ble.ports import Store
from gateway.ble.reconnect import Failure, classify
from gateway.receipt_time import capture_clock

__all__ = [
    "LINK_LOST",
    "PROFILES",
    "Profile",
    "Session",
    "SessionOutcome",
    "SessionTimings",
    "malformed_detail",
]

log = logging.getLogger(__name__)

LINK_LOST: Final = object()
"""Put in a session's inbox by the disconnected callback."""


@dataclass(frozen=True, slots=True)
class Profile:
    service: int
    measurements: tuple[int, ...]  # characteristics whose values are readings
    feature: int  # the readable characteristic whose read proves the link is encrypted


PROFILES: Final[Mapping[str, Profile]] = {
    "blood_pressure": Profile(0x1810, (uuids.BLOOD_PRESSURE_MEASUREMENT,), 0x2A49),
    "weight_scale": Profile(
        0x181D, (uuids.WEIGHT_MEASUREMENT, uuids.BODY_COMPOSITION_MEASUREMENT), 0x2A9E
    ),
    "glucose": Profile(
        0x1808, (uuids.GLUCOSE_MEASUREMENT, uuids.GLUCOSE_MEASUREMENT_CONTEXT), 0x2A51
    ),
}


@dataclass(frozen=True, slots=True)
class SessionTimings:
    # Cuffs and scales indicate their stored measurements right after the CCCD write (within
    # a connection interval or two); once nothing has come for this long, nothing is coming.
    linger_s: float = 2.0
    # RACP: the longest silence between two records of a transfer, or between the request and
    # the first answer, before the procedure is aborted (meters answer in well under a second).
    record_gap_s: float = 10.0
    # Records per transaction in a bulk transfer: bounds memory (L10.3) and the records a
    # dropped link costs, while keeping fsyncs well under one per record.
    racp_batch: int = 100


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    readings: int
    battery: int | None
    clock_offset_s: float | None
    device_information: Mapping[str, str]


DEFAULT_TIMINGS: Final = SessionTimings()

RACP_RESPONSE: Final = 0x06
RACP_REPORT: Final = 0x01
RACP_ABORT: Final = 0x03
RESULT_SUCCESS: Final = 0x01
RESULT_NO_RECORDS: Final = 0x06


class Session:
    """Runs the profile procedure over one connected `BleakClient`."""

    def __init__(
        self,
        *,
        address: str,
        kind: str,
        store: Store,
        clock_trusted: Callable[[], bool],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        timings: SessionTimings = DEFAULT_TIMINGS,
        read_device_information: bool = True,
        on_device_information: Callable[[Mapping[str, str]], Awaitable[None]] | None = None,
    ) -> None:
        if kind not in PROFILES:
            raise ValueError(f"no session for device kind {kind!r}")
        self.address = address.upper()
        self.kind = kind
        self.profile = PROFILES[kind]
        self.store = store
        self.clock_trusted = clock_trusted
        self.now = now
        self.timings = timings
        self.read_device_information = read_device_information
        self.on_device_information = on_device_information
        self.inbox: asyncio.Queue[object] = asyncio.Queue()
        self._offset: float | None = None

    # -- wiring -----------------------------------------------------------------------------

    def link_lost(self) -> None:
        """The disconnected callback (bleak calls it on every disconnect)."""
        self.inbox.put_nowait(LINK_LOST)

    def _callback(self, uuid: int) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        def _on_value(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self.inbox.put_nowait((uuid, bytes(data), self.now()))

        return _on_value

    async def _next(self, silence_s: float) -> object | None:
        """The next inbox item, or None after `silence_s` seconds of silence."""
        try:
            async with asyncio.timeout(silence_s):
                return await self.inbox.get()
        except TimeoutError:
            return None

    # -- the procedure ----------------------------------------------------------------------

    async def run(self, client: BleakClient) -> SessionOutcome:
        chars = _characteristics(client)
        feature = await self._ensure_encrypted(client, chars)
        info = await self._device_information(client, chars)
        if self.read_device_information and self.kind == "weight_scale":
            info.update(scale_resolutions(feature))
        if info and self.on_device_information is not None:
            # Before any reading is committed: the uplink names the device by its System ID in
            # every identifier, so it must be known before the first reading can be sent.
            await self.on_device_information(info)
        self._offset = await self._clock(client, chars)
        battery = await self._battery(client, chars)
        if self.kind == "glucose":
            count = await self._fetch_glucose(client, chars)
        else:
            count = await self._receive_stored(client, chars)
        return SessionOutcome(count, battery, self._offset, info)

    async def _ensure_encrypted(
        self, client: BleakClient, chars: Mapping[int, BleakGATTCharacteristic]
    ) -> bytes | None:
        """Read the profile's feature characteristic (its value, None if it has none)."""
        feature = chars.get(self.profile.feature)
        if feature is None or "read" not in feature.properties:
            return None  # the CCCD write below is then the first protected operation
        try:
            return bytes(await client.read_gatt_char(feature))
        except BleakError as exc:
            if classify(exc) is Failure.NEEDS_REPAIRING:
                raise NeedsRepairing(f"{self.address} refused our link security: {exc}") from exc
            raise

    async def _device_information(
        self, client: BleakClient, chars: Mapping[int, BleakGATTCharacteristic]
    ) -> dict[str, str]:
        if not self.read_device_information:
            return {}
        info: dict[str, str] = {}
        for uuid, name in uuids.DEVICE_INFORMATION.items():
            char = chars.get(uuid)
            if char is None or "read" not in char.properties:
                continue
            raw = bytes(await client.read_gatt_char(char))
            info[name] = _system_id(raw) if uuid == 0x2A23 else raw.decode("utf-8", "replace")
        return info

    async def _clock(
        self, client: BleakClient, chars: Mapping[int, BleakGATTCharacteristic]
    ) -> float | None:
        char = chars.get(uuids.CURRENT_TIME)
        if char is None or "read" not in char.properties:
            return None
        offset = await self._read_offset(client, char)
        if "write" in char.properties and self.clock_trusted():
            # Device local time is the gateway's local wall time (contract: zone explicit).
            local = self.now().astimezone().replace(tzinfo=None)
            await client.write_gatt_char(char, bytes(CurrentTime.at(local)), response=True)
            residual = await self._read_offset(client, char)
            await self.store.record_event(
                "device_clock_set",
                device=self.address,
                offset_before_s=offset,
                residual_s=residual,
            )
            offset = residual
        return offset

    async def _read_offset(
        self, client: BleakClient, char: BleakGATTCharacteristic
    ) -> float | None:
        raw = bytes(await client.read_gatt_char(char))
        gateway_local = self.now().astimezone().replace(tzinfo=None)
        try:
            current = CurrentTime.from_bytes(raw)
        except MalformedValue as exc:
            await self._malformed(exc)
            return None
        if current.timestamp is None:
            return None
        # A clock read in whole seconds (no fractions sent) is somewhere in the second it
        # shows: counted from its middle, a clock that is right is not corrected by a second
        # half the time (it read 0.5 s slow on average, and rounding made that 1 s).
        within = current.fractions256 / 256 if current.fractions256 else 0.5
        return (current.timestamp - gateway_local).total_seconds() + within

    async def _battery(
        self, client: BleakClient, chars: Mapping[int, BleakGATTCharacteristic]
    ) -> int | None:
        char = chars.get(uuids.BATTERY_LEVEL)
        if char is None or "read" not in char.properties:
            return None
        raw = bytes(await client.read_gatt_char(char))
        return raw[0] if len(raw) == 1 and raw[0] <= 100 else None

    async def _malformed(self, exc: MalformedValue) -> None:
        detail = malformed_detail(self.address, exc)
        log.warning(
            "%s sent a malformed %s value (%d octets): %s",
            self.address,
            detail["characteristic"],
            len(exc.data),
            exc.reason,
        )
        log.debug(
            "%s malformed %s value: hex %s", self.address, detail["characteristic"], exc.data.hex()
        )
        # the bytes themselves are kept sealed, the event names their record (L8.2)
        await self.store.record_malformed(self.address, exc.characteristic, exc.data, **detail)

    def _reading(
        self, uuid: int, value: bytes, at: datetime, context: bytes | None = None
    ) -> Reading:
        trusted = self.clock_trusted()
        # untrusted: keep the boot's monotonic clock too, to date it once the clock is (L7.2)
        boot, monotonic = (None, None) if trusted else capture_clock()
        return Reading(
            device=self.address,
            characteristic=uuid,
            value=value,
            received_at=at,
            clock_trusted=trusted,
            context=context,
            device_clock_offset_s=self._offset,
            boot_id=boot,
            monotonic_ns=monotonic,
        )

    async def _decodes(self, uuid: int, value: bytes) -> Any | None:
        """The decoded value, or None after recording a malformed one as an event."""
        try:
            return decode(uuid, value)
        except MalformedValue as exc:
            await self._malformed(exc)
            return None
        except UnknownCharacteristic:
            return value  # no codec here: the raw bytes are the record (reading.py)

    # -- blood pressure, weight scale -------------------------------------------------------

    async def _receive_stored(
        self, client: BleakClient, chars: Mapping[int, BleakGATTCharacteristic]
    ) -> int:
        subscribed = 0
        for uuid in self.profile.measurements:
            char = chars.get(uuid)
            if char is not None:
                await client.start_notify(char, self._callback(uuid))
                subscribed += 1
        if not subscribed:
            raise ProcedureFailed(f"{self.address} offers no {self.kind} measurement")
        count = 0
        while True:
            item = await self._next(self.timings.linger_s)
            if item is None or item is LINK_LOST:
                return count  # quiet, or the device hung up after its transfer: both normal
            uuid, value, at = _value(item)
            if await self._decodes(uuid, value) is None:
                continue
            await self.store.add([self._reading(uuid, value, at)])
            count += 1

    # -- glucose ----------------------------------------------------------------------------

    async def _fetch_glucose(
        self, client: BleakClient, chars: Mapping[int, BleakGATTCharacteristic]
    ) -> int:
        racp = chars.get(uuids.RACP)
        measurement = chars.get(uuids.GLUCOSE_MEASUREMENT)
        if racp is None or measurement is None:
            raise ProcedureFailed(f"{self.address} has no glucose measurement or RACP")
        await client.start_notify(measurement, self._callback(uuids.GLUCOSE_MEASUREMENT))
        context_char = chars.get(uuids.GLUCOSE_MEASUREMENT_CONTEXT)
        if context_char is not None:
            await client.start_notify(
                context_char, self._callback(uuids.GLUCOSE_MEASUREMENT_CONTEXT)
            )
        await client.start_notify(racp, self._callback(uuids.RACP))
        cursor = await self.store.cursor(self.address)
        transfer = _GlucoseTransfer(self, cursor)
        await client.write_gatt_char(racp, _report_request(cursor), response=True)
        while True:
            item = await self._next(self.timings.record_gap_s)
            if item is None:
                await transfer.commit()
                await _abort(client, racp)
                raise TimeoutError(f"{self.address}: RACP transfer stalled")
            if item is LINK_LOST:
                await transfer.commit()
                raise BleakError(f"{self.address} disconnected during an RACP transfer")
            uuid, value, at = _value(item)
            if uuid == uuids.RACP:
                await transfer.flush_pending()
                await transfer.commit()
                await self._racp_response(value)
                return transfer.committed
            await transfer.receive(uuid, value, at)

    async def _racp_response(self, value: bytes) -> None:
        if len(value) >= 4 and value[0] == RACP_RESPONSE:
            result = value[3]
            if result in (RESULT_SUCCESS, RESULT_NO_RECORDS):
                return
            if value[2] == RACP_ABORT:
                return  # the answer to our own abort
            await self.store.record_event(
                "racp_error", device=self.address, request=value[2], result=result
            )
            raise ProcedureFailed(f"{self.address}: RACP answered result {result:#04x}")
        await self._malformed(MalformedValue(uuids.RACP, value, 0, "not an RACP response"))


class _GlucoseTransfer:
    """The records of one RACP transfer on their way to the store: a measurement waits for
    the context its flags announce; complete records wait in `batch` until committed with the
    cursor set to the last sequence number committed."""

    def __init__(self, session: Session, cursor: int | None) -> None:
        self.s = session
        self.cursor = cursor
        self.pending: tuple[int, bytes, datetime] | None = None  # (seq, value, at)
        self.batch: list[Reading] = []
        self.last_seq: int | None = None
        self.committed = 0

    async def receive(self, uuid: int, value: bytes, at: datetime) -> None:
        decoded = await self.s._decodes(uuid, value)
        if decoded is None:
            if uuid == uuids.GLUCOSE_MEASUREMENT:
                await self._past_malformed(value)
            return
        seq = getattr(decoded, "sequence_number", None)
        if not isinstance(seq, int):
            await self.s._malformed(MalformedValue(uuid, value, 0, "no sequence number"))
            return
        if uuid == uuids.GLUCOSE_MEASUREMENT:
            await self.flush_pending()
            if self.cursor is not None and seq <= self.cursor:
                await self.s.store.record_event(
                    "sequence_below_cursor", device=self.s.address, sequence=seq, cursor=self.cursor
                )
            if getattr(decoded, "context_follows", False):
                self.pending = (seq, value, at)
            else:
                await self._complete(seq, self.s._reading(uuid, value, at))
        elif uuid == uuids.GLUCOSE_MEASUREMENT_CONTEXT:
            if self.pending is not None and self.pending[0] == seq:
                pseq, pvalue, pat = self.pending
                self.pending = None
                await self._complete(
                    pseq, self.s._reading(uuids.GLUCOSE_MEASUREMENT, pvalue, pat, context=value)
                )
            else:
                await self.s.store.record_event(
                    "orphan_context", device=self.s.address, sequence=seq
                )

    async def flush_pending(self) -> None:
        """The announced context never came (the next record or the response did)."""
        if self.pending is not None:
            seq, value, at = self.pending
            self.pending = None
            await self._complete(seq, self.s._reading(uuids.GLUCOSE_MEASUREMENT, value, at))

    async def _past_malformed(self, value: bytes) -> None:
        """A record that does not decode has its bytes kept sealed (`Session._malformed`); when
        it is the next number of the sequence, the cursor may pass it, or every connection
        would fetch and report it again. Its number is read only when it follows the last one
        (flags, then the u16): a number itself damaged must not move the cursor ahead of
        records still to fetch."""
        if len(value) < 3:
            return
        await self.flush_pending()  # the one before it, its context never coming now
        seq = value[1] | value[2] << 8
        last = self.last_seq if self.last_seq is not None else self.cursor
        if last is not None and seq == (last + 1) & 0xFFFF:  # after 65535 comes 0
            self.last_seq = seq

    async def _complete(self, seq: int, reading: Reading) -> None:
        self.batch.append(reading)
        self.last_seq = seq
        if len(self.batch) >= self.s.timings.racp_batch:
            await self.commit()

    async def commit(self) -> None:
        """Batch and cursor in one transaction; a measurement still waiting for its context
        stays out, so the cursor never passes it."""
        if self.last_seq is None or (not self.batch and self.last_seq == self.cursor):
            return
        await self.s.store.add(self.batch, cursor=(self.s.address, self.last_seq))
        self.committed += len(self.batch)
        self.cursor = self.last_seq
        self.batch = []


def malformed_detail(address: str, exc: MalformedValue) -> dict[str, str | int]:
    """The `malformed_value` event's detail: what a technician needs to find the fault, and
    nothing of the value (no bytes, no text read from them: `MalformedValue.reason` names
    fields and lengths only)."""
    return {
        "device": address,
        "characteristic": f"{exc.characteristic:04X}",
        "length": len(exc.data),
        "offset": exc.offset,
        "error": type(exc).__name__,
        "reason": exc.reason,
    }


def _report_request(cursor: int | None) -> bytes:
    """RACP "report stored records": all of them, or sequence number >= cursor + 1 (filter
    type 0x01). After 0xFFFF the meter's numbers wrap, so everything is asked again and the
    store's identity check absorbs what it already has."""
    if cursor is None or cursor >= 0xFFFF:
        return bytes((RACP_REPORT, 0x01))
    return bytes((RACP_REPORT, 0x03, 0x01)) + (cursor + 1).to_bytes(2, "little")


async def _abort(client: BleakClient, racp: BleakGATTCharacteristic) -> None:
    if client.is_connected:
        try:
            await client.write_gatt_char(racp, bytes((RACP_ABORT, 0x00)), response=True)
        except BleakError:
            log.debug("RACP abort not accepted", exc_info=True)


def _value(item: object) -> tuple[int, bytes, datetime]:
    assert isinstance(item, tuple)
    return item


def _characteristics(client: BleakClient) -> dict[int, BleakGATTCharacteristic]:
    """Characteristics by 16-bit UUID; a UUID present twice keeps its first occurrence (bleak
    itself refuses to pick), which is the profile's own in every device we know."""
    out: dict[int, BleakGATTCharacteristic] = {}
    for service in client.services:
        for char in service.characteristics:
            short = _short(char.uuid)
            if short is not None:
                out.setdefault(short, char)
    return out


def _short(uuid: str) -> int | None:
    head = uuid[:8]
    try:
        short = int(head, 16)
    except ValueError:
        return None
    return short if normalize_uuid_16(short) == uuid and short <= 0xFFFF else None


def _system_id(raw: bytes) -> str:
    """The DIS System ID as the EUI-64 the PHD identifiers use (OUI first)."""
    try:
        return SystemId.from_bytes(raw).eui64
    except MalformedValue:
        return raw.hex().upper()


def scale_resolutions(feature: bytes | None) -> dict[str, str]:
    """The Weight Scale Feature's weight and height resolution codes, as the registry keeps
    them with the Device Information ("0", not specified, for a feature that is absent or
    does not decode: the weight then keeps the field's own precision)."""
    try:
        decoded = None if feature is None else WeightScaleFeature.from_bytes(feature)
    except MalformedValue:
        decoded = None
    if decoded is None:
        return {"weight_resolution": "0", "height_resolution": "0"}
    return {
        "weight_resolution": str(int(decoded.weight_measurement_resolution)),
        "height_resolution": str(int(decoded.height_measurement_resolution)),
    }
