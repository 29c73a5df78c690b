"""The simulated radio world: peripherals built from `device_drivers` simulators, their
advertising bursts, links, bonds and injected faults. The bleak backend classes in
`backend.py` are bound to one `World` (no globals), so two worlds in one process never meet.

Fixture API (what tests, the demo and the conformance suite drive):
    world = World(state_dir=..., advert_interval_s=0.1, burst_s=10.0)
    p = world.add(simulator, bonded=True, passkey=None, refuse_pairing=False,
                  disconnect_after=None)      # -> Peripheral
    world.wake(address)                      # the device just measured: advertise a burst
    world.inject_connect_failure(address, exc, ...)  # next connect() attempts raise these
    world.inject_scan_failure(exc, ...)      # next scanner start() raises these
    world.drop_link(address)                 # link loss now (out of range, battery)
    world.forget_device_bond(address)        # bond lost on the device side
    scanner_cls, client_cls = world.backend()  # pass to BleakScanner / BleakClient backend=
    await world.run()                        # advertising + reading schedules, until cancelled
Observations: `p.connects` (successful connections), `p.connect_attempts`, `p.link`,
`world.bonds.has(address)`.

Rules the world enforces like BlueZ does (so the central is held to them):
- a bonded link is encrypted from connect (BlueZ re-encrypts with the stored LTK); attributes
  marked `Security.ENCRYPTED` and their CCCDs answer `INSUFFICIENT_ENCRYPTION` otherwise;
- with `strict_radio` (default), a connect while a scanner runs or another connect is pending
  fails with `org.bluez.Error.InProgress`, as on a Pi's combo chip;
- a device advertises only in bursts: `wake()` (a new measurement, or switched on) opens one
  for `burst_s`; a link the central closes ends the burst (the device goes back to sleep);
  a link lost on the device's side re-opens one, so the central can resume.
Idle costs nothing: a sleeping peripheral waits on an event, never polls.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from device_drivers.simulators.base import Emit, SimulatedDevice

if TYPE_CHECKING:
    from gateway.ble.simulated.backend import SimClient, SimScanner

__all__ = ["BondStore", "Link", "PairingAgent", "Peripheral", "World"]

BOND_FILE: Final = "simulated-bonds.json"

PairingAgent = Callable[[str], Awaitable[int | None]]
"""What the technician types when a passkey device pairs: address -> passkey (None refuses)."""


class BondStore:
    """The gateway side of the bonds (BlueZ's `/var/lib/bluetooth`), kept in one JSON file so
    bonds survive client objects and restarts, and `unpair()` forgets them. In memory only
    when no directory is given."""

    def __init__(self, state_dir: Path | None) -> None:
        self._path = state_dir / BOND_FILE if state_dir is not None else None
        self._bonds: set[str] = set()
        if self._path is not None and self._path.exists():
            self._bonds = set(json.loads(self._path.read_text())["bonds"])

    def has(self, address: str) -> bool:
        return address.upper() in self._bonds

    def add(self, address: str) -> None:
        if not self.has(address):
            self._bonds.add(address.upper())
            self._save()

    def remove(self, address: str) -> None:
        if self.has(address):
            self._bonds.discard(address.upper())
            self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"bonds": sorted(self._bonds)}, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self._path)


@dataclass(eq=False, slots=True)
class Link:
    """One connection between the gateway and a peripheral."""

    peripheral: Peripheral
    encrypted: bool
    subscribers: dict[int, Callable[[bytearray], None]] = field(default_factory=dict)
    outbox: asyncio.Queue[Emit] = field(default_factory=asyncio.Queue)
    sent: int = 0
    closed: bool = False
    on_closed: Callable[[], None] | None = None  # the owning client's "link lost" hook


@dataclass(eq=False, slots=True)
class Peripheral:
    """A simulated device as the radio sees it."""

    device: SimulatedDevice
    passkey: int | None = None  # None: Just Works
    refuse_pairing: bool = False
    disconnect_after: int | None = None  # values sent on one link before the device drops it
    device_bonded: bool = True
    mtu: int = 185
    link: Link | None = None
    burst_until: float = 0.0
    connects: int = 0
    connect_attempts: int = 0
    connect_failures: deque[BaseException] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        return self.device.address.upper()

    def advertising_now(self, now: float) -> bool:
        return self.link is None and now < self.burst_until and self.device.advertising()


class World:
    """A room full of simulated health devices and one simulated adapter."""

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        advert_interval_s: float = 0.1,
        burst_s: float = 10.0,
        connect_timeout_s: float = 0.2,
        strict_radio: bool = True,
        pairing_agent: PairingAgent | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bonds = BondStore(state_dir)
        self.advert_interval_s = advert_interval_s
        self.burst_s = burst_s
        # How long a connect to a silent device takes to fail; BlueZ's is bleak's timeout
        # (tens of seconds), kept short here so tests of "the burst ended" stay fast.
        self.connect_timeout_s = connect_timeout_s
        self.strict_radio = strict_radio
        self.pairing_agent = pairing_agent
        self.monotonic = monotonic
        self.peripherals: dict[str, Peripheral] = {}
        self.scan_failures: deque[BaseException] = deque()
        self._scanners: set[SimScanner] = set()
        self._connecting = 0
        self._schedules: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._running = False
        self._backend: tuple[type[SimScanner], type[SimClient]] | None = None

    # -- building ---------------------------------------------------------------------------

    def add(
        self,
        device: SimulatedDevice,
        *,
        bonded: bool = True,
        passkey: int | None = None,
        refuse_pairing: bool = False,
        disconnect_after: int | None = None,
    ) -> Peripheral:
        """Put a device in the room. `bonded` bonds it on both sides now (the registry's
        "paired" devices); otherwise any old gateway-side bond is forgotten."""
        p = Peripheral(
            device,
            passkey=passkey,
            refuse_pairing=refuse_pairing,
            disconnect_after=disconnect_after,
            device_bonded=bonded,
        )
        if p.address in self.peripherals:
            raise ValueError(f"two simulated devices at {p.address}")
        self.peripherals[p.address] = p
        if bonded:
            self.bonds.add(p.address)
        else:
            self.bonds.remove(p.address)
        if self._running and device.advertising():
            self.wake(p.address)
        return p

    def add_schedule(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A coroutine `run()` runs beside the advertisers (e.g. readings `interval_s` apart)."""
        self._schedules.append(job)

    def backend(self) -> tuple[type[SimScanner], type[SimClient]]:
        """The bleak backend classes bound to this world (one pair per world)."""
        if self._backend is None:
            from gateway.ble.simulated.backend import backend_classes

            self._backend = backend_classes(self)
        return self._backend

    # -- driving ----------------------------------------------------------------------------

    def peripheral(self, address: str) -> Peripheral:
        return self.peripherals[address.upper()]

    def wake(self, address: str) -> None:
        """The device has something new (or was switched on): advertise for `burst_s`."""
        p = self.peripheral(address)
        p.burst_until = self.monotonic() + self.burst_s
        p._wake.set()

    def inject_connect_failure(self, address: str, *failures: BaseException) -> None:
        self.peripheral(address).connect_failures.extend(failures)

    def inject_scan_failure(self, *failures: BaseException) -> None:
        self.scan_failures.extend(failures)

    def drop_link(self, address: str) -> None:
        """The link is lost on the device's side (out of range, a fault)."""
        p = self.peripheral(address)
        if p.link is not None:
            self.close_link(p.link, by_device=True)

    def forget_device_bond(self, address: str) -> None:
        """The device lost its bond (re-paired to a phone, reset): BlueZ still says Paired."""
        self.peripheral(address).device_bonded = False

    async def run(self) -> None:
        """Advertise and run the schedules until cancelled."""
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                for p in self.peripherals.values():
                    if p.device.advertising():
                        self.wake(p.address)
                    tg.create_task(self._advertise(p), name=f"carebox[{p.address}].sim-advertiser")
                for i, job in enumerate(self._schedules):
                    tg.create_task(job(), name=f"carebox.sim-schedule-{i}")
        finally:
            self._running = False

    async def _advertise(self, p: Peripheral) -> None:
        while True:
            await p._wake.wait()
            p._wake.clear()
            while p.advertising_now(self.monotonic()):
                for scanner in tuple(self._scanners):
                    scanner.heard(p)
                await asyncio.sleep(self.advert_interval_s)

    # -- used by the backend classes --------------------------------------------------------

    def scanners(self) -> Iterable[SimScanner]:
        return tuple(self._scanners)

    def start_scan(self, scanner: SimScanner) -> None:
        if self.scan_failures:
            raise self.scan_failures.popleft()
        if self.strict_radio and self._connecting:
            from gateway.ble.simulated.faults import in_progress

            raise in_progress()
        self._scanners.add(scanner)

    def stop_scan(self, scanner: SimScanner) -> None:
        self._scanners.discard(scanner)

    def begin_connect(self, p: Peripheral) -> None:
        from gateway.ble.simulated.faults import in_progress

        p.connect_attempts += 1
        if self.strict_radio and (self._scanners or self._connecting):
            raise in_progress()
        if p.connect_failures:
            raise p.connect_failures.popleft()
        self._connecting += 1

    def end_connect(self) -> None:
        self._connecting -= 1

    def open_link(self, p: Peripheral) -> Link:
        link = Link(p, encrypted=self.bonds.has(p.address) and p.device_bonded)
        p.link = link
        p.connects += 1
        return link

    def close_link(self, link: Link, *, by_device: bool) -> None:
        """Close a link once; the device forgets per-link state (an RACP procedure stops)."""
        if link.closed:
            return
        link.closed = True
        p = link.peripheral
        if p.link is link:
            p.link = None
        p.device.disconnected()
        if by_device:
            if p.device.advertising():
                self.wake(p.address)
        else:
            p.burst_until = 0.0  # the transfer is over: the device sleeps
        if link.on_closed is not None:
            link.on_closed()
