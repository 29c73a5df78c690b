"""Root of the gateway's error tree. Each subpackage (store, ble, uplink, fhir, config) defines
its own subclasses beside its code and draws them in its docstring::

    CareboxError (device_drivers.errors)
    └── GatewayError
        ├── ConfigError            a config file that cannot be used; names the key
        ├── store.StoreError       ...
        ├── ble.BleError           ...
        └── uplink.UplinkError     ...
"""

from __future__ import annotations

from device_drivers.errors import CareboxError

__all__ = ["CareboxError", "ConfigError", "GatewayError"]


class GatewayError(CareboxError):
    """Root of the errors of `gateway`."""


class ConfigError(GatewayError):
    """A configuration that cannot be used; the message names the key and what to do."""
