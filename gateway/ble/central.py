"""`Central`: the gateway's half of the radio, the BLE layer's one public entry point.

Tasks (all in one TaskGroup, all named):
    carebox.ble.world            the simulated world (only with backend "simulated")
    carebox.ble.scanner          the arbiter's scanner keeper
    carebox[<address>].session   one per registry device: wait for its advertisement, connect
                                 through the arbiter, run its `Session`, back off per the
                                 reconnect policy
    carebox[<address>].stranger  one-shot: an unknown device advertising a health service
Nothing polls: a device task waits on an event the scanner callback sets; the scanner runs
until a connect attempt needs the radio.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from gateway.ble.arbiter import RadioArbiter
from gateway.ble.backend import Backend, load_backend
from gateway.ble.ports import BleConfigLike, SimulatorSpec, Store
from gateway.ble.reconnect import Failure, ReconnectPolicy
from gateway.ble.registry import Registry
from gateway.ble.session import DEFAULT_TIMINGS, Session, SessionOutcome, SessionTimings
from gateway.ble.simulated.world import World

__all__ = ["CONNECT_TIMEOUT_S", "Central", "DeviceState"]

log = logging.getLogger(__name__)

# bleak's own default is 10 s for BlueZ; a cuff's burst lasts a few seconds, and a retry inside
# the burst beats one long attempt, so an attempt gets 8 s and the policy decides the rest.
CONNECT_TIMEOUT_S: Final = 8.0
# An advertisement older than this no longer means the device is listening: wait for a new one.
ADVERT_FRESH_S: Final = 2.0


@dataclass(slots=True)
class DeviceState:
    """What `carebox status` may show about a device (no health values)."""

    address: str
    kind: str
    last_contact: datetime | None = None
    sessions: int = 0
    readings: int = 0
    failure: Failure | None = None  # a class whose budget is spent, e.g. needs re-pairing
    last_error: str | None = None
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    advertised: asyncio.Event = field(default_factory=asyncio.Event)
    device: BLEDevice | None = None
    seen_at: float = 0.0


class Central:
    """Connects to the registry's devices when they advertise and commits what they hold.

    `store` is a `gateway.store.Store` (see `ports.Store` for the calls made), `ble_config` the
    `[ble]` table, `clock_trusted()` tells whether the gateway clock may be written to devices
    and trusted for receive times, `state_dir` holds the simulated bond store, `simulators` the
    `[[simulator]]` tables (used with backend "simulated"). `world` overrides the simulated
    world built from `simulators` (tests, bench).
    """

    def __init__(
        self,
        store: Store,
        ble_config: BleConfigLike,
        *,
        clock_trusted: Callable[[], bool],
        state_dir: Path,
        simulators: Sequence[SimulatorSpec] = (),
        world: World | None = None,
        timings: SessionTimings = DEFAULT_TIMINGS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.clock_trusted = clock_trusted
        self.state_dir = Path(state_dir)
        self.simulators = tuple(simulators)
        self.timings = timings
        self.now = now
        if ble_config.backend == "simulated" and world is None:
            from gateway.ble.simulated.build import build_world

            world = build_world(self.simulators, state_dir=self.state_dir)
        self.backend: Backend = load_backend(
            ble_config.backend, adapter=ble_config.adapter, world=world
        )
        self.world = self.backend.world
        self.registry = Registry(store)
        self.devices: dict[str, DeviceState] = {}
        self.strangers: set[str] = set()
        self.arbiter = RadioArbiter(
            self.backend.scanner,
            self._on_advertisement,
            scanner_kwargs=self.backend.scanner_kwargs,
            on_escalation=self._escalated_scanner,
        )
        self._tg: asyncio.TaskGroup | None = None

    async def run(self) -> None:
        """Run until cancelled."""
        await self.registry.refresh()
        for sim in self.simulators:
            if sim.paired:
                await self.registry.enroll(sim.address, sim.kind, sim.name, self.now())
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            if self.world is not None:
                tg.create_task(self.world.run(), name="carebox.ble.world")
            for address in self.registry.records:
                self._watch(address)
            tg.create_task(self.arbiter.run(), name="carebox.ble.scanner")

    async def reload_registry(self) -> None:
        """Pick up devices paired (or removed) since start; provisioning calls this."""
        await self.registry.refresh()
        for address in self.registry.records:
            self._watch(address)
            self.strangers.discard(address)

    # -- scanning ---------------------------------------------------------------------------

    def _watch(self, address: str) -> None:
        address = address.upper()
        if address in self.devices or self._tg is None:
            return
        kind = self.registry.kind(address) or ""
        state = DeviceState(address, kind)
        self.devices[address] = state
        self._tg.create_task(self._device_loop(state), name=f"carebox[{address}].session")

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        address = device.address.upper()
        state = self.devices.get(address)
        if state is not None:
            state.device = device
            state.seen_at = asyncio.get_running_loop().time()
            state.advertised.set()
            return
        if address in self.strangers or self._tg is None:
            return
        self.strangers.add(address)
        self._tg.create_task(
            self._record_stranger(address, adv), name=f"carebox[{address}].stranger"
        )

    async def _record_stranger(self, address: str, adv: AdvertisementData) -> None:
        """Recorded once, by address (its name says nothing trustworthy), and never connected."""
        log.info("unknown device %s advertises a health service; not connecting", address)
        await self.store.record_event(
            "stranger_device", address=address, services=" ".join(sorted(adv.service_uuids))
        )

    async def _escalated_scanner(self, what: str, exc: BaseException) -> None:
        await self.store.record_event("ble_adapter_trouble", part=what, error=str(exc))

    # -- one device -------------------------------------------------------------------------

    async def _device_loop(self, state: DeviceState) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await state.advertised.wait()
            state.advertised.clear()
            if loop.time() - state.seen_at > ADVERT_FRESH_S or state.device is None:
                continue
            try:
                outcome = await self._connect_and_run(state, state.device)
            except Exception as exc:
                decision = state.policy.failed(exc)
                state.last_error = f"{decision.failure}: {exc}"
                state.failure = state.policy.state()
                log.warning(
                    "%s session failed (%s, attempt %d); next try in %.1f s",
                    state.address,
                    decision.failure,
                    decision.attempt,
                    decision.delay_s,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                if decision.escalate:
                    await self.store.record_event(
                        "needs_repairing"
                        if decision.failure is Failure.NEEDS_REPAIRING
                        else "ble_device_trouble",
                        device=state.address,
                        failure=str(decision.failure),
                        attempts=decision.attempt,
                    )
                await asyncio.sleep(decision.delay_s)
                continue
            state.policy.succeeded()
            state.failure = None
            state.last_contact = self.now()
            await self.store.touch_device(
                state.address, at=state.last_contact, battery=outcome.battery
            )
            if outcome.device_information:
                await self.registry.cache_device_information(
                    state.address, outcome.device_information
                )
            # counted last: whoever watches `sessions` sees the contact and registry recorded
            state.sessions += 1
            state.readings += outcome.readings

    async def _connect_and_run(self, state: DeviceState, device: BLEDevice) -> SessionOutcome:
        session = Session(
            address=state.address,
            kind=state.kind,
            store=self.store,
            clock_trusted=self.clock_trusted,
            now=self.now,
            timings=self.timings,
            read_device_information=self.registry.needs_device_information(state.address),
            on_device_information=functools.partial(
                self.registry.cache_device_information, state.address
            ),
        )
        client = BleakClient(
            device,
            disconnected_callback=lambda _client: session.link_lost(),
            backend=self.backend.client,
            timeout=CONNECT_TIMEOUT_S,
            **(self.backend.client_kwargs or {}),
        )
        async with self.arbiter.exclusive():
            await client.connect()
        try:
            return await session.run(client)
        finally:
            await client.disconnect()
