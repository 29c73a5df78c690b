"""The BLE central over bleak, and the simulated bleak backend (issue 4).

Layout
    central.py     `Central(store, ble_config, *, clock_trusted, state_dir, simulators=())`,
                   `await central.run()`: scanner, registry, one task per paired device
    arbiter.py     `RadioArbiter`: one scanner, stopped for each connect attempt, one attempt
                   at a time (L3.1)
    session.py     `Session`: one connection's procedure per device class (BP, scale, glucose
                   RACP), committing through the store
    reconnect.py   `classify(exc)` and `ReconnectPolicy`: backoff and budget per error class
    registry.py    the paired-device registry as the central reads and caches it
    backend.py     `load_backend("bluez" | "simulated" | "module:Name")`
    agent.py       `PairingAgent`: a BlueZ org.bluez.Agent1 over dbus-fast for the pairing window
    ports.py       Protocols of what this package calls on the store and reads from config
    uuids.py       128-bit UUID strings (the scanner matches nothing with 16-bit ones)
    simulated/     the simulated world and its bleak backend classes (runtime code)

Errors::

    GatewayError
    └── BleError
        ├── BackendLoadError   `[ble] backend` is not a usable bleak backend
        ├── NeedsRepairing     the device refuses our link security (bond lost on one side)
        └── ProcedureFailed    a profile procedure ended in a way we cannot go on from
    bleak's own errors (BleakError, BleakDBusError, BleakGATTProtocolError, TimeoutError) pass
    through sessions unchanged and are classified by `reconnect.classify`.

Invariants
- Only bleak's public API is called (`BleakScanner`, `BleakClient`, `backend=`); the backend
  classes are injected, nothing imports `bleak.backends.bluezdbus`.
- Only registry devices are ever connected; a stranger is recorded once, by address.
- A glucose cursor moves only in the transaction that commits the records it covers.
- No session pairs: pairing is the technician's (`agent.py` + provisioning); a security
  refusal becomes "needs re-pairing" and backs off to an hour.
- No polling: device tasks wait on advertisement events; waits are bounded by named constants.

Gotchas
- `BLEDevice` objects, not address strings, go to `BleakClient` (a string makes BlueZ scan).
- bleak calls the disconnected callback on every disconnect, the requested ones included.
- A cuff hanging up right after its stored measurements is the normal end of a session.
"""

from gateway.ble.backend import Backend, load_backend
from gateway.ble.central import Central, DeviceState
from gateway.ble.errors import BackendLoadError, BleError, NeedsRepairing, ProcedureFailed
from gateway.ble.reconnect import Failure, ReconnectPolicy, classify
from gateway.ble.session import SessionTimings

__all__ = [
    "Backend",
    "BackendLoadError",
    "BleError",
    "Central",
    "DeviceState",
    "Failure",
    "NeedsRepairing",
    "ProcedureFailed",
    "ReconnectPolicy",
    "SessionTimings",
    "classify",
    "load_backend",
]
