"""The bumble tier: bleak backends held to what a real BLE host stack does.

Layout
- `world.py`: `ConformanceWorld`, the fixture protocol every backend under test implements
  (backend classes, `add_device`, the technician's passkey, `wake`, `drop_link`,
  `drop_link_after`, `bonded`).
- `bumble_world.py`: `BumbleWorld`, one bumble central (the gateway's adapter) and one bumble
  peripheral per simulator, each a `Controller` + `Host` + `Device` on one `LocalLink`: a real
  host stack (advertising, LL, L2CAP, ATT/GATT, SMP) with no radio, no HCI device, no D-Bus.
- `peripheral.py`: `SimulatedPeripheral`, any `device_drivers` `SimulatedDevice` served as a
  bumble GATT server (CCCD security, indications flow-controlled by their confirmations,
  passkey or Just Works bonding, advertising while the simulator wants to).
- `bumble_backend.py`: `make_backend(world)`, the test-only bleak scanner/client over the
  central, doing what BlueZ does where bumble does less.
- `simulated_world.py`: `SimulatedWorld`, the same protocol over `gateway.ble.simulated.World`
  (translation only: a behaviour the fake lacks makes the suite fail, it is not patched in).
- `probes.py`: small cuff/meter simulators for radio-layer scenarios.
- `conftest.py`: the `world` fixture, parametrized over ["bumble", "simulated"];
  `test_conformance.py` (radio scenarios) and `test_health_devices.py` (the glucose meter
  simulator): the suite every backend must pass; `test_bumble_backend.py`: duties of the
  bumble backend alone (security requests, ABC canary).

Invariants
- Tests touch devices through bleak's public API only (`BleakScanner`/`BleakClient` with
  `backend=`); everything else goes through `ConformanceWorld`.
- No sleeps: every wait is on an event, bounded by a named timeout.
- A bumble peripheral task that fails fails the test (`SimulatedPeripheral.errors`).

Gotchas (BLE.md §10)
- Identity address type RANDOM on both sides, or reconnects find no LTK.
- bumble's auto-added CCCD has no security; `peripheral.py` supplies its own.
- bumble's `subscribe()` registers before writing the CCCD; the backend removes it on failure
  and dispatches through one callback per handle.
- Security Requests reach the central as an event only; the backend answers them.
"""
