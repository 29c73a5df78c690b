"""The orchestrator: `carebox run` (and the demo) as one `asyncio.TaskGroup`.

    config ─► Store ─► Central (BLE sessions commit readings) ─► wake ─► Uplink (FHIR over MQTT)

Each part runs under `_supervise`: a part that fails is logged, recorded as an event and
restarted with backoff instead of taking the service down; a configuration error (a part
that can never work as configured) stops the service with one line. SIGTERM stops taking
readings first, gives the uplink `FLUSH_S` to deliver what waits, then closes the store, all
within systemd's default 10 s stop budget.

`carebox status` runs in another process: it reads the store read-only and the small runtime
file written here (`status.json` in the runtime directory: upstream state, clock trust),
which lives on tmpfs under systemd (`$RUNTIME_DIRECTORY`) so the SD card sees no status writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

from gateway import __version__
from gateway.clock import ClockTrust
from gateway.config import Config, check_state_dir
from gateway.errors import ConfigError, GatewayError
from gateway.fhir import (
    DeviceInfo,
    DeviceNotIdentified,
    FhirContext,
    GatewayInfo,
    MappingError,
)
from gateway.receipt_time import ClockNow, ready_to_render
from gateway.render_pool import RenderPool, render_here
from gateway.store import Store, StoredReading
from gateway.store.sealed import SealedReading
from gateway.systemd import Notifier, Watchdog

log = logging.getLogger("carebox.service")

FLUSH_S: Final = 6.0  # part of systemd's 10 s TimeoutStopSec left for delivery at SIGTERM
FLUSH_POLL_S: Final = 0.1  # at shutdown only: how often to look whether the queue drained
CLOSE_S: Final = 2.0  # closing the store: one checkpoint of the WAL
RESTART_MIN_S: Final = 1.0  # a failed part restarts after this, doubling...
RESTART_MAX_S: Final = 60.0  # ...up to this: a broken adapter must not spin the CPU
HEALTHY_AFTER_S: Final = 120.0  # a part that ran this long resets its restart backoff
STATUS_WRITE_S: Final = 5.0  # how stale `carebox status` may find the upstream state
REPORTED_KEPT: Final = 10_000  # unmappable readings remembered as reported (an event each)
HEARTBEAT_S: Final = 30.0  # each loop beats at least this often; the watchdog waits 3x
MAINTENANCE_INTERVAL_S: Final = 6 * 3600  # prune and key age: hours apart; also at each start


def _fatal_errors() -> tuple[type[BaseException], ...]:
    from gateway.ble import BackendLoadError
    from gateway.uplink import UplinkConfigError

    return (ConfigError, UplinkConfigError, BackendLoadError)


_FATAL: Final = _fatal_errors()


class PatientNotProvisioned(GatewayError):
    """No `[patient]` in the config: readings wait until `carebox provision init` writes it."""


# The events topic's word on the clock (DESIGN: "clock not trusted"): the same kind the uplink
# records when a certificate looks invalid only because the clock is wrong (its EventKind.CLOCK,
# not imported here: `carebox status` imports this module and must not load paho).
CLOCK_NOT_TRUSTED: Final = "clock.not_synchronized"
CLOCK_TRUSTED: Final = "clock.synchronized"


def _process_identity(pid: int) -> tuple[str, int] | None:
    """(boot id, start time in clock ticks since boot) of process `pid`, None if it is gone:
    a pid alone may name another process after a crash, the pair never does."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # exited, not yet reaped
        return None
    return boot, int(fields[19])  # field 22 of proc(5), counted from field 3


def runtime_dir(config: Config) -> Path:
    """Where the service's runtime status lives: systemd's RuntimeDirectory (tmpfs) when run as
    the unit, else beside the state (developer and demo runs)."""
    run = os.environ.get("RUNTIME_DIRECTORY")
    return Path(run.split(":")[0]) if run else config.state_dir / "run"


class Service:
    """The whole pipeline for one config. `world` injects a simulated world (demo, tests)."""

    def __init__(
        self,
        config: Config,
        *,
        notifier: Notifier | None = None,
        clock: ClockTrust | None = None,
        world: Any = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.clock = clock or ClockTrust(config.clock.source)
        self.world = world
        self.store: Store | None = None
        self.central: Any = None
        self.uplink: Any = None
        self.committed = 0  # readings committed by this process (the demo's view shows it)
        self._known_devices: dict[str, Any] = {}
        self._reported: dict[str, None] = {}  # insertion-ordered: the oldest goes first
        self._stopping = asyncio.Event()
        self._watchdog = Watchdog(self.notifier)
        self._renderer = RenderPool()

    # -- the mapper the uplink calls ----------------------------------------------------------

    def _context(self) -> FhirContext:
        patient = self.config.patient
        if patient is None or not patient.system:
            raise PatientNotProvisioned("no [patient] system and value in the config")
        devices: dict[str, DeviceInfo] = {}
        # The registry as stored at start, then the central's live view: a reading re-sent
        # right after a restart must map to the same device identifier (system id, not the
        # address) as when it was first sent, or the backend would see two records.
        records = {
            **self._known_devices,
            **getattr(getattr(self.central, "registry", None), "records", {}),
        }
        for address, rec in records.items():
            devices[address] = DeviceInfo(
                address=address,
                manufacturer=rec.manufacturer,
                model=rec.model,
                serial=rec.serial,
                firmware=rec.firmware,
                hardware=rec.hardware,
                software=rec.software,
                system_id=rec.system_id,
                weight_resolution=_code(rec.weight_resolution),
                height_resolution=_code(rec.height_resolution),
            )
        return FhirContext(
            gateway_id=self.config.gateway_id,
            patient_system=patient.system,
            patient_value=patient.value,
            tz=self.config.clock.zone,
            devices=devices,
            gateway_info=self._gateway_info,
        )

    @functools.cached_property
    def _gateway_info(self) -> GatewayInfo:
        """The PhgDevice: its SYSID is derived once and kept in the state directory
        (gateway/system_id.py); `run` reads it at start, off the event loop. The PhgDevice stays
        keyed on the gateway id, as in every Bundle sent before it had a SYSID, so the server
        matches the same Device (`ifNoneExist`) instead of creating a second one."""
        from gateway.system_id import gateway_system_id

        system_id = gateway_system_id(self.config.state_dir, self.config.ble.adapter)
        return GatewayInfo(system_id=system_id, software_version=__version__)

    async def _map(self, items: Sequence[StoredReading]) -> bytes | list[bytes]:
        """The uplink's mapper when rendering runs here (no worker): readings opened by the
        store's lease."""
        ctx = self._context()
        items = ready_to_render(items, ClockNow.read(self.clock.trusted()))
        profile = self.config.upstream.fhir_profile
        payload, skipped = render_here(items, ctx, profile)
        self._report(skipped)
        return payload

    async def _map_sealed(self, items: Sequence[SealedReading]) -> bytes | list[bytes]:
        """The uplink's mapper with a rendering worker: the readings reach it sealed and are
        opened, dated and rendered there (gateway/store/sealed.py, render_pool)."""
        ctx = self._context()
        clock = ClockNow.read(self.clock.trusted())
        profile = self.config.upstream.fhir_profile
        rendered = await self._renderer.render_sealed(items, ctx, clock, profile)
        if rendered.tampered and self.store is not None:
            # quarantined with its event before the message goes: its ack then finds no row
            await self.store.quarantine_leased(rendered.tampered)
        self._report(rendered.skipped)
        return rendered.payload

    def _report(self, skipped: Sequence[MappingError]) -> None:
        for err in skipped:
            if isinstance(err, DeviceNotIdentified):
                # Not dropped: raising makes the uplink split the cut and hold this reading
                # (retried after its lease) until the registry knows the device's system id.
                raise err
        reported = self._reported
        for err in skipped:
            # Acked with its message: an undecodable value was committed as received (L8.2)
            # and its event names it; no bytes, no value in the event. Once: a cut the uplink
            # splits (too large, or holding a reading it must hold back) maps it again.
            key = str(err.item_id)
            if key in reported:
                continue
            reported[key] = None
            if len(reported) > REPORTED_KEPT:
                del reported[next(iter(reported))]
            self._event_soon("reading_unmappable", reading=key, reason=err.reason)

    def _event_soon(self, kind: str, **detail: str | int) -> None:
        store = self.store
        if store is None:
            return
        task = asyncio.get_running_loop().create_task(store.record_event(kind, **detail))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -- wiring -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until `stop()` (or SIGTERM/SIGINT when `install_signals`)."""
        from gateway.ble import Central
        from gateway.uplink import Uplink, UplinkSettings

        config = self.config
        check_state_dir(config.state_dir)
        settings = UplinkSettings.from_config(config)
        settings.check_files()
        store = await Store.open(
            config.state_dir,
            max_mb=config.store.max_mb,
            min_free_mb=config.store.min_free_mb,
            key_provider=config.store.key_provider,
            retention_days=config.store.retention_days,
        )
        self.store = store
        try:
            self._known_devices = {d.address.upper(): d for d in await store.devices()}
            await asyncio.to_thread(lambda: self._gateway_info)  # the SYSID, read or kept now
            # With a rendering worker the leases stay sealed: it opens them, off this process.
            sealed = self._renderer.workers > 0
            uplink: Uplink[Any] = Uplink(
                settings,
                store.sealed() if sealed else store,
                self._map_sealed if sealed else self._map,
                version=__version__,
                clock_trusted=self.clock.trusted,
                events_cursor=config.state_dir / "events.cursor",
            )
            self.uplink = uplink
            self.central = Central(
                _WakingStore(store, self),
                config.ble,
                clock_trusted=self.clock.trusted,
                state_dir=config.state_dir,
                simulators=config.simulators,
                world=self.world,
            )
            await self._run_parts()
        finally:
            self._renderer.close()
            with contextlib.suppress(OSError):
                (runtime_dir(config) / "status.json").unlink()  # stopped: nothing to report
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_S):
                    await store.close()
            self.notifier.stopping()

    async def _run_parts(self) -> None:
        uplink, central = self.uplink, self.central
        async with asyncio.TaskGroup() as tg:
            ble_task = tg.create_task(self._supervise("ble", central.run), name="carebox.ble")
            up_task = tg.create_task(self._supervise("uplink", uplink.run), name="carebox.uplink")
            side = [
                tg.create_task(self._status_loop(), name="carebox.status"),
                tg.create_task(self._clock_loop(), name="carebox.clock"),
                tg.create_task(self._maintenance_loop(), name="carebox.maintenance"),
                tg.create_task(self._watchdog.run(), name="carebox.watchdog"),
            ]
            self.notifier.ready(f"{self.config.gateway_id}: running")
            log.info("carebox %s running as %s", __version__, self.config.gateway_id)
            await self._stopping.wait()
            # Stop taking readings first, then give the uplink a moment to deliver what waits.
            ble_task.cancel()
            self.notifier.stopping("delivering what waits")
            await self._flush()
            up_task.cancel()
            for task in side:
                task.cancel()

    async def _clock_loop(self) -> None:
        """While the clock is not trusted the events topic says so (and `carebox status`, from
        the status file); once it is, what waited for it goes at once."""
        if self.clock.trusted():
            return
        log.warning(
            "clock not synchronized (source %s): readings are captured and kept; those that "
            "need the clock wait for it",
            self.clock.source,
        )
        await self._record(CLOCK_NOT_TRUSTED, source=self.clock.source)
        await self.clock.wait_trusted()
        log.info("clock synchronized: sending what waited for it")
        await self._record(CLOCK_TRUSTED, source=self.clock.source)
        if self.uplink is not None:
            self.uplink.retry_held()

    async def _record(self, kind: str, **detail: str) -> None:
        if self.store is not None:
            with contextlib.suppress(GatewayError):
                await self.store.record_event(kind, **detail)
                self.wake_uplink()

    def wake_uplink(self) -> None:
        """Something new to send. Only while connected: a wake during an outage would make the
        uplink retry at once and grow its backoff; its own probe notices the broker return."""
        uplink = self.uplink
        if uplink is not None and uplink.state.connected:
            uplink.wake()

    async def _maintenance_loop(self) -> None:
        """Store housekeeping at start and every `MAINTENANCE_INTERVAL_S`: data key rotation
        by age, retention, unused keys, the event log, disk space (`Store.maintain`)."""
        while True:
            store = self.store
            if store is not None:
                try:
                    done = await store.maintain()
                except GatewayError as exc:
                    log.warning("store maintenance: %s (next try in 6 h)", exc)
                else:
                    if done.rotated_to is not None:
                        log.info("store: new data key %d for new readings", done.rotated_to)
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)

    async def _flush(self) -> None:
        store = self.store
        if store is None or self.uplink is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_S):
                while self.uplink.state.connected:
                    stats = await store.stats()
                    if stats.queue_depth == 0:
                        return
                    self.uplink.wake()
                    await asyncio.sleep(FLUSH_POLL_S)

    async def _supervise(self, name: str, part: Callable[[], Awaitable[None]]) -> None:
        delay = RESTART_MIN_S
        beat = self._watchdog.register(f"carebox.{name}", HEARTBEAT_S * 3)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await part()
            except _FATAL as exc:
                # Configured so that it can never work: restarting would only spin.
                log.error("%s: %s", name, exc)  # noqa: TRY400 - one line, no traceback
                self.stop()
                raise
            except Exception as exc:
                failure: BaseException = exc
            else:
                return
            if loop.time() - started > HEALTHY_AFTER_S:
                delay = RESTART_MIN_S
            log.warning(
                "%s failed (%s: %s); restarting in %.0f s",
                name,
                type(failure).__name__,
                str(failure).splitlines()[0] if str(failure) else "",
                delay,
            )
            if self.store is not None:
                with contextlib.suppress(Exception):
                    await self.store.record_event(
                        "part_restarted", part=name, error=type(failure).__name__
                    )
            beat.beat()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_S)

    async def _status_loop(self) -> None:
        beat = self._watchdog.register("carebox.status", HEARTBEAT_S * 3)
        path = runtime_dir(self.config) / "status.json"
        # `carebox status` believes the file only while this very process lives
        identity = _process_identity(os.getpid())
        written: dict[str, object] | None = None
        while True:
            beat.beat()
            state = self.uplink.state if self.uplink is not None else None
            connected = bool(state and state.connected)
            last_sync = state.last_sync if state else None
            doc: dict[str, object] = {
                "pid": os.getpid(),
                "process": list(identity) if identity else None,
                "clock_trusted": self.clock.trusted(),
                "upstream": {
                    "connected": connected,
                    "protocol": state.protocol if state else None,
                    "last_sync": last_sync.isoformat() if last_sync else None,
                    "last_error": state.last_error if state else None,
                    "error_layer": state.error_layer if state else None,
                },
            }
            # Written on change only: outside systemd the runtime dir is on the SD card (L2.6).
            if doc != written:
                await asyncio.to_thread(_write_private_json, path, doc)
                self.notifier.status("upstream connected" if connected else "upstream waiting")
                written = doc
            await asyncio.sleep(STATUS_WRITE_S)

    def stop(self) -> None:
        self._stopping.set()

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)


class _WakingStore:
    """The store as the BLE central sees it: every commit wakes the uplink, so a reading taken
    while online leaves at once instead of at the next idle recheck."""

    def __init__(self, store: Store, service: Service) -> None:
        self._store = store
        self._service = service

    async def add(
        self, readings: Sequence[Any], *, cursor: tuple[str, int] | None = None
    ) -> list[str]:
        ids = await self._store.add(readings, cursor=cursor)
        self._service.committed += len(readings)
        self._service.wake_uplink()
        return ids

    async def record_event(self, kind: str, /, **detail: Any) -> None:
        """An event (a stranger device, a device's trouble) goes out now too, not at the
        uplink's next idle recheck."""
        await self._store.record_event(kind, **detail)
        self._service.wake_uplink()

    async def record_malformed(
        self, device: str, characteristic: int, value: bytes, /, **detail: Any
    ) -> None:
        await self._store.record_malformed(device, characteristic, value, **detail)
        self._service.wake_uplink()  # its event

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _write_private_json(path: Path, doc: dict[str, object]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)


def read_runtime_status(config: Config) -> dict[str, Any] | None:
    """The running service's status file, or None when no service is running: the file of a
    service that was killed (no chance to remove it) names a process that is gone, or whose
    pid now belongs to another process (another start time or boot)."""
    path = runtime_dir(config) / "status.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    pid, recorded = doc.get("pid"), doc.get("process")
    if not isinstance(pid, int) or not isinstance(recorded, list):
        return None
    alive = _process_identity(pid)
    if alive is None or list(alive) != recorded:
        return None
    return doc


async def serve(config: Config) -> int:
    """`carebox run`."""
    service = Service(config)
    service.install_signals()
    await service.run()
    return 0


def _code(text: str | None) -> int | None:
    """A resolution code the registry keeps as text; None when absent or not a number."""
    return int(text) if text is not None and text.isdigit() else None
