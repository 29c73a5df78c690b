"""The service's configuration: one TOML file, checked whole before anything starts.

Where it comes from: `load_config(path)` (the CLI's `--config`), else `$CAREBOX_CONFIG`, else
`/etc/carebox/carebox.toml`. The keys and defaults are DESIGN.md's "Config" section; every
key but `[upstream] url` has a default. Three documented extensions: `[clock] timezone` (a tz
database name, default the system's zone; LESSONS L6.5), `[store] retention_days`, and
`[upstream] fhir_profile` ("phd": HL7 PHD IG transaction Bundles, the contract's default;
"ans-mes": one ANS "Mesures de santé" Bundle per Observation, notes/FHIR.md section 14).

Invariants
- Every problem is one `ConfigError` line that starts with the file and names the key, the
  wrong value and the expected type, e.g.
  ``carebox.toml: [store] max_mb must be an integer, got "big"``. Unknown keys are errors
  (a typo must not silently fall back to a default).
- Values are frozen slotted dataclasses; the simulator's `readings` are read-only mappings.
- Relative paths are taken relative to the config file's folder, so a config beside a
  checkout works from any working directory.
- Only `mqtts://` upstream URLs exist: there is no plaintext switch to turn on.

Gotchas
- TOML booleans are not integers here (`max_mb = true` is an error), although `bool` is an
  `int` in Python.
- The default `gateway_id` is derived from the board (see `derive_gateway_id`); provisioning
  writes it explicitly so the service (sandboxed) and the technician's CLI always agree.
- `check_state_dir` (tmpfs/ramfs refusal, LESSONS L1.4) is separate from loading: the CLI's
  read-only commands load the config without needing the state directory to exist.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "ENV_CONFIG",
    "BleConfig",
    "ClockConfig",
    "ClockSource",
    "Config",
    "ConfigError",
    "KeyProvider",
    "PatientConfig",
    "SimulatorConfig",
    "SimulatorKind",
    "StoreConfig",
    "UpstreamConfig",
    "VolatileStateDir",
    "check_state_dir",
    "config_path",
    "derive_gateway_id",
    "load_config",
    "system_timezone",
]

DEFAULT_CONFIG_PATH: Final = Path("/etc/carebox/carebox.toml")
DEFAULT_STATE_DIR: Final = Path("/var/lib/carebox")
DEFAULT_CA: Final = Path("/etc/carebox/ca.pem")
ENV_CONFIG: Final = "CAREBOX_CONFIG"
DEFAULT_MQTTS_PORT: Final = 8883

ClockSource = Literal["auto", "system"]
KeyProvider = Literal["file", "rpi-otp"]
SimulatorKind = Literal["blood_pressure", "glucose", "weight_scale"]

_CLOCK_SOURCES: Final = ("auto", "system")
_KEY_PROVIDERS: Final = ("file", "rpi-otp")
_SIMULATOR_KINDS: Final = ("blood_pressure", "glucose", "weight_scale")
# Used in MQTT topic names: no wildcards, no separators, short enough for any broker.
_GATEWAY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BACKEND_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_TOPIC_SEGMENT = re.compile(r"[^/+#\x00]+")
# The machine-id must not be exposed as it is (machine-id(5)); an app-specific id is derived
# from it the way sd_id128_get_machine_app_specific() does, keyed by this label.
_APP_ID_LABEL: Final = b"carebox gateway id v1"


# France's national health identifier (INS, NIR-based): the box's first destination is the
# patient's national record; a provider elsewhere writes its own system with the value.
INS_NIR_SYSTEM: Final = "urn:oid:1.2.250.1.213.1.4.8"


@dataclass(frozen=True, slots=True)
class PatientConfig:
    """Whom the readings are about (FHIR `subject` identifier), written by provisioning."""

    value: str
    system: str = INS_NIR_SYSTEM


@dataclass(frozen=True, slots=True)
class BleConfig:
    backend: str = "bluez"  # "bluez" | "simulated" | "package.module:BackendClass"
    adapter: str = "hci0"


FHIR_PROFILES: Final = ("phd", "ans-mes")


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str
    ca: Path  # the CA that signs the broker's certificate (a private CA is the common case)
    cert: Path
    key: Path
    topic_prefix: str
    host: str  # from url
    port: int  # from url, default 8883
    fhir_profile: str = "phd"  # one of FHIR_PROFILES


@dataclass(frozen=True, slots=True)
class StoreConfig:
    max_mb: int = 512
    min_free_mb: int = 64
    key_provider: KeyProvider = "file"
    # Extension: how long the store may keep what it keeps for a limited time (tombstones of
    # delivered records). Never applies to undelivered records (LESSONS L1.3). None: forever.
    retention_days: int | None = None


@dataclass(frozen=True, slots=True)
class ClockConfig:
    source: ClockSource = "auto"
    timezone: str = "UTC"  # tz database name; device local times are read in it (L6.5)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """One `[[simulator]]` table: a simulated device for `[ble] backend = "simulated"`."""

    kind: SimulatorKind
    address: str  # upper case, XX:XX:XX:XX:XX:XX
    name: str
    paired: bool = True
    readings: tuple[Mapping[str, object], ...] = ()
    raw: tuple[str, ...] = ()  # lower-case hex, no spaces
    interval_s: float = 1.0
    disconnect_after: int | None = None
    corrupt_every: int | None = None
    refuse_pairing: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    gateway_id: str
    state_dir: Path
    patient: PatientConfig | None
    ble: BleConfig
    upstream: UpstreamConfig
    store: StoreConfig = field(default_factory=StoreConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    simulators: tuple[SimulatorConfig, ...] = ()
    source: Path | None = None  # the file it was read from, for messages


class VolatileStateDir(ConfigError):
    """`state_dir` is on a RAM-backed file system: every reading would die at power-off."""


# ---------------------------------------------------------------------------------------------
# Locating and parsing


def config_path(path: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The file to read: the explicit path, else `$CAREBOX_CONFIG`, else the default."""
    if path is not None:
        return Path(path)
    environ = os.environ if env is None else env
    from_env = environ.get(ENV_CONFIG, "").strip()
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_config(path: Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and check the whole configuration; raise `ConfigError` with one line if unusable."""
    source = config_path(path, env)
    try:
        text = source.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: no such file; pass --config FILE or set {ENV_CONFIG} "
            "(`carebox provision init` writes one)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"{source}: permission denied; run as the carebox user or root") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return _Parser(source, env).config(data)


# ---------------------------------------------------------------------------------------------
# Defaults taken from the machine


def derive_gateway_id(root: Path = Path("/")) -> str:
    """`cbx-<hex>` from the board's serial number, else from an app-specific machine id.

    Order: the device tree's serial number (every Raspberry Pi), `/proc/cpuinfo`'s `Serial`
    line, then `/etc/machine-id` hashed (never exposed as it is). `root` is for tests.
    """
    serial = _read_text(root / "sys/firmware/devicetree/base/serial-number")
    serial = (serial or "").strip("\x00 \n")
    if not re.fullmatch(r"[0-9A-Fa-f]*[1-9A-Fa-f][0-9A-Fa-f]*", serial):
        cpuinfo = _read_text(root / "proc/cpuinfo") or ""
        match = re.search(r"^Serial\s*:\s*([0-9A-Fa-f]+)\s*$", cpuinfo, re.MULTILINE)
        serial = match.group(1) if match else ""
    if serial and int(serial, 16) != 0:
        return "cbx-" + (serial.lower().lstrip("0") or "0")
    machine_id = (_read_text(root / "etc/machine-id") or "").strip()
    if re.fullmatch(r"[0-9a-f]{32}", machine_id):
        digest = hmac.new(bytes.fromhex(machine_id), _APP_ID_LABEL, hashlib.sha256)
        return "cbx-" + digest.hexdigest()[:16]
    raise ConfigError(
        "cannot derive gateway_id (no board serial number, no /etc/machine-id); "
        'set gateway_id = "cbx-..." in the config'
    )


def system_timezone(env: Mapping[str, str] | None = None, root: Path = Path("/")) -> str:
    """The system's tz database name: `$TZ`, `/etc/timezone`, the `/etc/localtime` link, or UTC."""
    environ = os.environ if env is None else env
    candidates = [environ.get("TZ", "").removeprefix(":")]
    candidates.append((_read_text(root / "etc/timezone") or "").strip())
    try:
        target = os.readlink(root / "etc/localtime")
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        candidates.append(target.rsplit("zoneinfo/", 1)[1])
    for name in candidates:
        if name and _valid_zone(name):
            return name
    return "UTC"


def _valid_zone(name: str) -> bool:
    if name.startswith("/") or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# The state directory (LESSONS L1.4)

# File systems whose content lives in RAM: a reading committed there dies at power-off.
_VOLATILE_FS: Final = frozenset({"tmpfs", "ramfs", "devtmpfs"})


def check_state_dir(state_dir: Path, *, mountinfo: str | None = None) -> None:
    """Refuse a `state_dir` on tmpfs/ramfs (or missing mount data): raise `VolatileStateDir`.

    The directory need not exist yet (symbolic links in the part that exists are followed,
    the rest lands on the mount that holds it). `mountinfo` is
    `/proc/self/mountinfo`'s text, injectable for tests.
    """
    resolved = Path(os.path.realpath(state_dir))
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
        except OSError as exc:
            raise VolatileStateDir(
                f"state_dir {state_dir}: cannot tell which file system holds it "
                f"(/proc/self/mountinfo: {exc.strerror}); is /proc mounted?"
            ) from None
    fstype, mount_point = _filesystem_of(resolved, mountinfo)
    if fstype in _VOLATILE_FS:
        raise VolatileStateDir(
            f"state_dir {state_dir} is on {fstype} ({mount_point}), which is RAM: readings "
            "would be lost at power-off; set state_dir to a folder on the SD card or a disk"
        )


def _filesystem_of(path: Path, mountinfo: str) -> tuple[str, str]:
    best: tuple[int, str, str] = (-1, "", "")
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mount_point = _unescape_mount(fields[4])
        if not _is_under(path, Path(mount_point)):
            continue
        depth = len(Path(mount_point).parts)
        # Later lines of the same depth are mounted on top of earlier ones: keep the last.
        if depth >= best[0]:
            best = (depth, right.split()[0], mount_point)
    return best[1], best[2]


def _unescape_mount(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _is_under(path: Path, mount_point: Path) -> bool:
    return path == mount_point or mount_point in path.parents


# ---------------------------------------------------------------------------------------------
# Checking the document


_Table = Mapping[str, object]


class _Parser:
    def __init__(self, source: Path, env: Mapping[str, str] | None) -> None:
        self.source = source
        self.base = source.parent
        self.env = env

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {message}")

    # -- top level ----------------------------------------------------------------------------

    def config(self, doc: _Table) -> Config:
        self.known(
            doc,
            "",
            (
                "gateway_id",
                "state_dir",
                "patient",
                "ble",
                "upstream",
                "store",
                "clock",
                "simulator",
            ),
        )
        gateway_id = self.string(doc, "", "gateway_id")
        if gateway_id is None:
            gateway_id = derive_gateway_id()
        elif not _GATEWAY_ID.fullmatch(gateway_id):
            raise self.fail(
                f"gateway_id must be 1-64 letters, digits, '.', '_' or '-' (it is part of MQTT "
                f"topics), got {_show(gateway_id)}"
            )
        state_dir = self.path(doc, "", "state_dir") or DEFAULT_STATE_DIR
        ble = self.ble(self.table(doc, "ble"))
        simulators = self.simulators(doc)
        if simulators and ble.backend == "bluez":
            raise self.fail(
                '[[simulator]] tables need [ble] backend = "simulated" (the backend is "bluez")'
            )
        return Config(
            gateway_id=gateway_id,
            state_dir=state_dir,
            patient=self.patient(self.table(doc, "patient")),
            ble=ble,
            upstream=self.upstream(self.table(doc, "upstream"), state_dir),
            store=self.store(self.table(doc, "store")),
            clock=self.clock(self.table(doc, "clock")),
            simulators=simulators,
            source=self.source,
        )

    def patient(self, table: _Table | None) -> PatientConfig | None:
        if table is None:
            return None
        self.known(table, "[patient]", ("system", "value"))
        system = self.string(table, "[patient]", "system")
        value = self.string(table, "[patient]", "value")
        if value is None or not value.strip():
            if system is None:
                return None
            raise self.fail("[patient] value is missing (system is set); `carebox provision init`")
        if system is None:
            return PatientConfig(value=value)
        if not system.strip():
            raise self.fail("[patient] system is empty: leave it out for the default or set one")
        return PatientConfig(value=value, system=system)

    def ble(self, table: _Table | None) -> BleConfig:
        table = table or {}
        self.known(table, "[ble]", ("backend", "adapter"))
        backend = self.string(table, "[ble]", "backend") or "bluez"
        if backend not in ("bluez", "simulated") and not _BACKEND_PATH.fullmatch(backend):
            raise self.fail(
                '[ble] backend must be "bluez", "simulated" or "package.module:BackendClass", '
                f"got {_show(backend)}"
            )
        adapter = self.string(table, "[ble]", "adapter") or "hci0"
        if "/" in adapter or not adapter.strip():
            raise self.fail(
                f'[ble] adapter must be an adapter name such as "hci0", got {_show(adapter)}'
            )
        return BleConfig(backend=backend, adapter=adapter)

    def upstream(self, table: _Table | None, state_dir: Path) -> UpstreamConfig:
        if table is None:
            raise self.fail(
                '[upstream] url is required, e.g. url = "mqtts://broker.example.org:8883" '
                "(`carebox provision init` writes it)"
            )
        where = "[upstream]"
        self.known(table, where, ("url", "ca", "cert", "key", "topic_prefix", "fhir_profile"))
        url = self.string(table, where, "url")
        if url is None:
            raise self.fail(
                '[upstream] url is required, e.g. url = "mqtts://broker.example.org:8883"'
            )
        host, port = self.mqtts_url(url)
        prefix = self.string(table, where, "topic_prefix")
        prefix = "carebox/v1" if prefix is None else prefix
        if not all(_TOPIC_SEGMENT.fullmatch(part) for part in prefix.split("/")):
            raise self.fail(
                "[upstream] topic_prefix must be topic levels separated by '/', without '+', "
                f"'#', or empty levels, got {_show(prefix)}"
            )
        return UpstreamConfig(
            url=url,
            host=host,
            port=port,
            ca=self.path(table, where, "ca") or DEFAULT_CA,
            cert=self.path(table, where, "cert") or state_dir / "identity" / "cert.pem",
            key=self.path(table, where, "key") or state_dir / "identity" / "key.pem",
            topic_prefix=prefix,
            fhir_profile=self.choice(table, where, "fhir_profile", FHIR_PROFILES) or "phd",
        )

    def mqtts_url(self, url: str) -> tuple[str, int]:
        bad = f"[upstream] url must look like mqtts://host:8883, got {_show(url)}"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise self.fail(bad) from None
        if parts.scheme != "mqtts":
            raise self.fail(
                f"[upstream] url must start with mqtts:// (TLS is always on), got {_show(url)}"
            )
        if parts.username is not None or parts.password is not None:
            raise self.fail(
                "[upstream] url must not carry a user name or password: the gateway "
                "authenticates with its client certificate"
            )
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise self.fail(bad)
        return parts.hostname, port or DEFAULT_MQTTS_PORT

    def store(self, table: _Table | None) -> StoreConfig:
        table = table or {}
        where = "[store]"
        self.known(table, where, ("max_mb", "min_free_mb", "key_provider", "retention_days"))
        max_mb = self.integer(table, where, "max_mb", minimum=1)
        min_free = self.integer(table, where, "min_free_mb", minimum=0)
        provider = self.choice(table, where, "key_provider", _KEY_PROVIDERS) or "file"
        return StoreConfig(
            max_mb=512 if max_mb is None else max_mb,
            min_free_mb=64 if min_free is None else min_free,
            key_provider=cast("KeyProvider", provider),
            retention_days=self.integer(table, where, "retention_days", minimum=1),
        )

    def clock(self, table: _Table | None) -> ClockConfig:
        table = table or {}
        self.known(table, "[clock]", ("source", "timezone"))
        source = self.choice(table, "[clock]", "source", _CLOCK_SOURCES) or "auto"
        zone = self.string(table, "[clock]", "timezone")
        if zone is None:
            zone = system_timezone(self.env)
        elif not _valid_zone(zone):
            raise self.fail(
                '[clock] timezone must be a tz database name such as "Europe/Paris", '
                f"got {_show(zone)}"
            )
        return ClockConfig(source=cast("ClockSource", source), timezone=zone)

    def simulators(self, doc: _Table) -> tuple[SimulatorConfig, ...]:
        tables = doc.get("simulator")
        if tables is None:
            return ()
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise self.fail(
                f"simulator must be an array of tables ([[simulator]]), got {_show(tables)}"
            )
        result: list[SimulatorConfig] = []
        seen: dict[str, int] = {}
        for index, table in enumerate(tables, start=1):
            sim = self.simulator(table, f"[[simulator]] #{index}")
            if sim.address in seen:
                raise self.fail(
                    f"[[simulator]] #{index} address {sim.address} is already used by "
                    f"[[simulator]] #{seen[sim.address]}"
                )
            seen[sim.address] = index
            result.append(sim)
        return tuple(result)

    def simulator(self, table: _Table, where: str) -> SimulatorConfig:
        self.known(
            table,
            where,
            (
                "kind",
                "address",
                "name",
                "paired",
                "readings",
                "raw",
                "interval_s",
                "disconnect_after",
                "corrupt_every",
                "refuse_pairing",
            ),
        )
        kind = self.choice(table, where, "kind", _SIMULATOR_KINDS)
        if kind is None:
            raise self.fail(
                f'{where} kind is required: "blood_pressure", "glucose" or "weight_scale"'
            )
        address = self.string(table, where, "address")
        if address is None:
            raise self.fail(f'{where} address is required, e.g. "C0:FF:EE:00:00:01"')
        if not _ADDRESS.fullmatch(address):
            raise self.fail(
                f"{where} address must be six hex bytes like C0:FF:EE:00:00:01, "
                f"got {_show(address)}"
            )
        readings = self.readings(table, where)
        raw = self.raw(table, where)
        if readings and raw:
            raise self.fail(f"{where} has both readings and raw: give one of them")
        interval = self.number(table, where, "interval_s")
        paired = self.boolean(table, where, "paired")
        refuse = self.boolean(table, where, "refuse_pairing")
        return SimulatorConfig(
            kind=cast("SimulatorKind", kind),
            address=address.upper(),
            name=self.string(table, where, "name") or f"Carebox {kind.replace('_', ' ')}",
            paired=True if paired is None else paired,
            readings=readings,
            raw=raw,
            interval_s=1.0 if interval is None else interval,
            disconnect_after=self.integer(table, where, "disconnect_after", minimum=1),
            corrupt_every=self.integer(table, where, "corrupt_every", minimum=1),
            refuse_pairing=False if refuse is None else refuse,
        )

    def readings(self, table: _Table, where: str) -> tuple[Mapping[str, object], ...]:
        value = table.get("readings")
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.fail(
                f"{where} readings must be an array of tables (field names as in "
                f"`carebox decode`), got {_show(value)}"
            )
        return tuple(cast("Mapping[str, object]", _freeze(item)) for item in value)

    def raw(self, table: _Table, where: str) -> tuple[str, ...]:
        value = table.get("raw")
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(f"{where} raw must be an array of hex strings, got {_show(value)}")
        result: list[str] = []
        for position, item in enumerate(value, start=1):
            compact = "".join(item.split()).removeprefix("0x")
            if not _HEX.fullmatch(compact):
                raise self.fail(
                    f"{where} raw value {position} must be an even number of hex digits, "
                    f"got {_show(item)}"
                )
            result.append(compact.lower())
        return tuple(result)

    # -- typed getters ------------------------------------------------------------------------

    def table(self, doc: _Table, key: str) -> _Table | None:
        value = doc.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(f"{key} must be a table ([{key}]), got {_show(value)}")
        return cast("_Table", value)

    def known(self, table: _Table, where: str, keys: tuple[str, ...]) -> None:
        for key in table:
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(keys)})"
                raise self.fail(f"unknown key {_name(where, key)}{hint}")

    def typed(
        self, table: _Table, where: str, key: str, accept: Callable[[object], bool], what: str
    ) -> object | None:
        value = table.get(key)
        if value is None:
            return None
        if not accept(value):
            raise self.fail(f"{_name(where, key)} must be {what}, got {_show(value)}")
        return value

    def string(self, table: _Table, where: str, key: str) -> str | None:
        value = self.typed(table, where, key, lambda v: isinstance(v, str), "a string")
        return cast("str | None", value)

    def boolean(self, table: _Table, where: str, key: str) -> bool | None:
        value = self.typed(table, where, key, lambda v: isinstance(v, bool), "true or false")
        return cast("bool | None", value)

    def integer(self, table: _Table, where: str, key: str, *, minimum: int) -> int | None:
        value = self.typed(
            table,
            where,
            key,
            lambda v: isinstance(v, int) and not isinstance(v, bool),
            "an integer",
        )
        if value is None:
            return None
        number = cast("int", value)
        if number < minimum:
            raise self.fail(f"{_name(where, key)} must be at least {minimum}, got {number}")
        return number

    def number(self, table: _Table, where: str, key: str) -> float | None:
        value = self.typed(
            table,
            where,
            key,
            lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "a number",
        )
        if value is None:
            return None
        number = float(cast("float", value))
        if not number > 0 or number == float("inf"):
            raise self.fail(f"{_name(where, key)} must be a positive number, got {_show(value)}")
        return number

    def choice(self, table: _Table, where: str, key: str, options: tuple[str, ...]) -> str | None:
        listed = " or ".join(json.dumps(option) for option in options)
        value = self.typed(table, where, key, lambda v: v in options, listed)
        return cast("str | None", value)

    def path(self, table: _Table, where: str, key: str) -> Path | None:
        text = self.string(table, where, key)
        if text is None:
            return None
        if not text.strip() or "\x00" in text:
            raise self.fail(f"{_name(where, key)} must be a file path, got {_show(text)}")
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base / path


def _name(where: str, key: str) -> str:
    return f"{where} {key}" if where else key


def _show(value: object) -> str:
    """A value as the user wrote it, short, on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, list):
        text = "an array"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _freeze(value: object) -> object:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
