"""`[ble] backend` -> the bleak backend classes the central passes through `backend=`.

- ``"bluez"``: bleak's platform backend (None: bleak picks it; nothing here imports
  `bleak.backends.bluezdbus`), with `bluez={"adapter": ...}` for the configured adapter;
- ``"simulated"``: the classes of a simulated `World` (built from the `[[simulator]]` tables);
- ``"package.module:Name"``: an importable bleak backend. `Name` is either
  * a `BaseBleakClient` subclass; its scanner is its `scanner_backend` class attribute when it
    has one (a `BaseBleakScanner` subclass), else the platform scanner; or
  * a callable (not a class) taking no arguments and returning
    ``(scanner_class, client_class)``, e.g. a factory bound to a test stack.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from gateway.ble.errors import BackendLoadError
from gateway.ble.simulated.world import World

__all__ = ["Backend", "load_backend"]


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    scanner: type[BaseBleakScanner] | None  # None: bleak's platform backend
    client: type[BaseBleakClient] | None
    world: World | None = None
    scanner_kwargs: dict[str, Any] | None = None
    client_kwargs: dict[str, Any] | None = None


def load_backend(spec: str, *, adapter: str = "hci0", world: World | None = None) -> Backend:
    """Resolve `[ble] backend`; `world` is required for ``"simulated"``."""
    if spec == "bluez":
        bluez = {"bluez": {"adapter": adapter}}
        return Backend("bluez", None, None, scanner_kwargs=bluez, client_kwargs=bluez)
    if spec == "simulated":
        if world is None:
            raise BackendLoadError('[ble] backend = "simulated" needs a simulated world')
        scanner, client = world.backend()
        return Backend("simulated", scanner, client, world=world)
    return _import_backend(spec)


def _import_backend(spec: str) -> Backend:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BackendLoadError(
            f'[ble] backend = "{spec}": expected "bluez", "simulated" or "package.module:Name"'
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendLoadError(
            f'[ble] backend = "{spec}": cannot import {module_name} ({exc}); install it or fix '
            "the name"
        ) from exc
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise BackendLoadError(f'[ble] backend = "{spec}": {module_name} has no {attr}') from None
    if isinstance(target, type):
        if not issubclass(target, BaseBleakClient):
            raise BackendLoadError(
                f'[ble] backend = "{spec}": {attr} is not a bleak BaseBleakClient subclass'
            )
        scanner = getattr(target, "scanner_backend", None)
        if scanner is not None and not (
            isinstance(scanner, type) and issubclass(scanner, BaseBleakScanner)
        ):
            raise BackendLoadError(
                f'[ble] backend = "{spec}": {attr}.scanner_backend is not a BaseBleakScanner'
            )
        return Backend(spec, scanner, target)
    if callable(target):
        pair = target()
        if (
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], type)
            and issubclass(pair[0], BaseBleakScanner)
            and isinstance(pair[1], type)
            and issubclass(pair[1], BaseBleakClient)
        ):
            return Backend(spec, pair[0], pair[1])
    raise BackendLoadError(
        f'[ble] backend = "{spec}": {attr} must be a BaseBleakClient subclass or a factory '
        "returning (scanner class, client class)"
    )
