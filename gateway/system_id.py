"""The gateway's own system id: the EUI-64 its PhgDevice carries as SYSID (notes/FHIR.md
sections 1 and 11), chosen once per state directory and never changed.

A Raspberry Pi has no EUI-64 of its own, so one is derived from a 48-bit MAC by inserting FF-FE
after the OUI, with `gateway.fhir.eui64_from_mac`: the rule and byte order used for health
devices' ids (OUI first, `B8:27:EB:12:34:56` -> `B8-27-EB-FF-FE-12-34-56` on the wire).

Which MAC, the first that gives one:
1. the BLE adapter's address, ``/sys/class/bluetooth/<[ble] adapter>/address``, where older
   kernels published it. Current ones do not (net/bluetooth/hci_sysfs.c keeps only `reset`
   there), so on Raspberry Pi OS bookworm the next source is the one used;
2. the first physical network interface by name (``/sys/class/net/<name>/device`` exists only
   for those: `lo`, bridges, tunnels and the like are skipped): `eth0` on a Pi 3B+/4/5, `wlan0`
   on a Zero 2 W;
3. none (a container, a VM): a random MAC, generated once, locally administered and unicast,
   so the id it gives has the EUI-64's "local" bit set and claims no manufacturer.
A MAC counts only if it is a globally unique unicast address: not all zeros, not a group
address, not locally administered (a randomized Wi-Fi address, a VM's or container's NIC: set
by software, shared between machines or changed at boot, so not this box's own).

Kept in ``<state_dir>/identity/system_id`` (0600, in a 0700 folder, beside the MQTT identity)
as one line, the id as it goes out. Written at the first start (fsynced, linked into place, so
a crash leaves no half file and a concurrent writer's id is kept), read back at every later
one: a new adapter, a USB Ethernet dongle or another interface order never changes it. It
names the gateway's Device, so the FHIR notes' rule applies: pick once, never change. A file
holding no EUI-64 (damaged card, hand edit) is replaced by a fresh derivation, with a warning.
Nothing here stops the service: when the id can be neither read nor kept, the PhgDevice goes
without a SYSID (as before there was one), with a warning, rather than with one that could
change at the next start.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path
from typing import Final

from gateway.fhir import eui64_from_mac

__all__ = ["SYSTEM_ID_FILE", "derive_system_id", "gateway_system_id"]

log = logging.getLogger(__name__)

SYSTEM_ID_FILE: Final = Path("identity") / "system_id"
"""Where, under the state directory, the gateway's system id is kept."""

SYS: Final = Path("/sys")

_MAC: Final = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}", re.IGNORECASE)
_EUI64: Final = re.compile(r"[0-9A-F]{2}(?:-[0-9A-F]{2}){7}")
_GROUP: Final = 0x01  # first octet: a multicast or broadcast address
_LOCAL: Final = 0x02  # first octet: locally administered (set by software, not the maker)


def _dashed(eui64: str) -> str:
    return "-".join(eui64[i : i + 2] for i in range(0, 16, 2))


def _own_mac(path: Path) -> str | None:
    """The MAC in the sysfs attribute `path` if it is a globally unique unicast address."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not _MAC.fullmatch(text):
        return None
    first = int(text[:2], 16)
    if first & (_GROUP | _LOCAL) or int(text.replace(":", ""), 16) == 0:
        return None
    return text


def _adapter_mac(adapter: str, sys_root: Path) -> str | None:
    return _own_mac(sys_root / "class" / "bluetooth" / adapter / "address")


def _network_mac(sys_root: Path) -> tuple[str, str] | None:
    """(interface, MAC) of the first physical interface by name that has a usable MAC."""
    net = sys_root / "class" / "net"
    try:
        names = sorted(entry.name for entry in net.iterdir())
    except OSError:
        return None
    for name in names:
        if name == "lo" or not (net / name / "device").exists():
            continue
        mac = _own_mac(net / name / "address")
        if mac is not None:
            return name, mac
    return None


def _random_mac() -> str:
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] | _LOCAL) & ~_GROUP
    return ":".join(f"{o:02x}" for o in octets)


def derive_system_id(adapter: str, sys_root: Path = SYS) -> tuple[str, str]:
    """(EUI-64 as dashed upper-case bytes, where it came from) by the rule in the module
    docstring; a new random one on each call when the machine has no usable MAC."""
    mac = _adapter_mac(adapter, sys_root)
    if mac is not None:
        source = f"Bluetooth adapter {adapter} {mac}"
    elif (found := _network_mac(sys_root)) is not None:
        name, mac = found
        source = f"network interface {name} {mac}"
    else:
        mac = _random_mac()
        source = "a random locally administered MAC (no adapter or network MAC found)"
    return _dashed(eui64_from_mac(mac)), source


def _read(path: Path) -> str | None:
    """The kept id; None if there is none yet; ValueError if the file holds no EUI-64."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ValueError("text that is not ASCII") from None
    if not _EUI64.fullmatch(text):
        raise ValueError(f"{len(text)} characters that are not an EUI-64")
    return text


def _keep(path: Path, system_id: str) -> None:
    """Write `system_id` to `path` unless another writer got there first (then its id wins)."""
    path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{system_id}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # not rename: never replaces an id already kept
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def gateway_system_id(state_dir: Path, adapter: str, sys_root: Path = SYS) -> str | None:
    """The gateway's system id (dashed upper-case EUI-64): the one kept in `state_dir`, else
    derived now and kept there. None, with a warning, if it can be neither read nor kept.
    Blocking file I/O: call it off the event loop."""
    path = state_dir / SYSTEM_ID_FILE
    try:
        kept = _read(path)
    except ValueError as exc:
        log.warning("%s holds %s: deriving the gateway system id again", path, exc)
        kept = None
        try:
            path.unlink()
        except OSError as unlink_error:
            log.warning("gateway system id: cannot remove %s: %s", path, unlink_error)
            return None
    except OSError as exc:
        log.warning("gateway system id: cannot read %s (%s); sent without one", path, exc)
        return None
    if kept is not None:
        return kept
    system_id, source = derive_system_id(adapter, sys_root)
    try:
        _keep(path, system_id)
        kept = _read(path)
    except (OSError, ValueError) as exc:
        log.warning("gateway system id: cannot keep it in %s (%s); sent without one", path, exc)
        return None
    if kept == system_id:
        log.info("gateway system id %s, derived from %s, kept in %s", system_id, source, path)
    return kept
