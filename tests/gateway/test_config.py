"""The config loader: DESIGN.md's keys and defaults, one-line errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    VolatileStateDir,
    check_state_dir,
    config_path,
    derive_gateway_id,
    load_config,
    system_timezone,
)

MINIMAL = 'gateway_id = "cbx-test"\n[upstream]\nurl = "mqtts://broker.example.org"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "carebox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text), env={"TZ": "Europe/Paris"})


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'carebox.toml'}: ")
    return message.split(": ", 1)[1]


def test_minimal_config_takes_every_default(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    assert config.gateway_id == "cbx-test"
    assert config.state_dir == Path("/var/lib/carebox")
    assert config.patient is None
    assert (config.ble.backend, config.ble.adapter) == ("bluez", "hci0")
    up = config.upstream
    assert (up.host, up.port, up.topic_prefix, up.ca) == (
        "broker.example.org",
        8883,
        "carebox/v1",
        Path("/etc/carebox/ca.pem"),
    )
    assert up.cert == Path("/var/lib/carebox/identity/cert.pem")
    assert up.key == Path("/var/lib/carebox/identity/key.pem")
    assert up.fhir_profile == "phd"
    assert load(tmp_path, MINIMAL + 'fhir_profile = "ans-mes"\n').upstream.fhir_profile == "ans-mes"
    assert (config.store.max_mb, config.store.min_free_mb) == (512, 64)
    assert (config.store.key_provider, config.store.retention_days) == ("file", None)
    assert (config.clock.source, config.clock.timezone) == ("auto", "Europe/Paris")
    assert config.simulators == ()
    assert config.source == tmp_path / "carebox.toml"


def test_the_design_example_loads_as_written(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
gateway_id = "cbx-0001"
state_dir = "/srv/carebox"
[patient]
system = "urn:oid:1.2.250.1.213.1.4.8"
value = "123456"
[ble]
backend = "simulated"
adapter = "hci1"
[upstream]
url = "mqtts://broker.example.org:8884"
ca = "/etc/carebox/ca.pem"
topic_prefix = "acme/carebox/v1"
[store]
max_mb = 100
min_free_mb = 0
key_provider = "rpi-otp"
retention_days = 30
[clock]
source = "system"
timezone = "America/New_York"
""",
    )
    assert config.state_dir == Path("/srv/carebox")
    assert config.patient is not None
    assert (config.patient.system, config.patient.value) == (
        "urn:oid:1.2.250.1.213.1.4.8",
        "123456",
    )
    assert config.upstream.port == 8884
    assert config.upstream.ca == Path("/etc/carebox/ca.pem")
    # cert and key follow state_dir when not given
    assert config.upstream.cert == Path("/srv/carebox/identity/cert.pem")
    assert config.store.key_provider == "rpi-otp"
    assert config.store.retention_days == 30
    assert config.clock.source == "system"
    assert config.clock.zone.key == "America/New_York"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load(tmp_path, 'state_dir = "state"\n' + MINIMAL + 'ca = "pki/ca.pem"\n')
    assert config.state_dir == tmp_path / "state"
    assert config.upstream.ca == tmp_path / "pki/ca.pem"
    assert config.upstream.key == tmp_path / "state/identity/key.pem"


def test_simulators_are_parsed_and_frozen(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        MINIMAL
        + """
[ble]
backend = "simulated"
[[simulator]]
kind = "blood_pressure"
address = "c0:ff:ee:00:00:01"
name = "Cuff"
interval_s = 0.5
disconnect_after = 3
[[simulator.readings]]
systolic = 120
diastolic = 80
unit = "mmHg"
measurement_status = { body_movement = true }
[[simulator]]
kind = "glucose"
address = "C0:FF:EE:00:00:02"
paired = false
refuse_pairing = true
corrupt_every = 2
raw = ["0b 01 00", "0xAABB"]
""",
    )
    bp, meter = config.simulators
    assert (bp.kind, bp.address, bp.name, bp.paired) == (
        "blood_pressure",
        "C0:FF:EE:00:00:01",
        "Cuff",
        True,
    )
    assert (bp.interval_s, bp.disconnect_after, bp.corrupt_every) == (0.5, 3, None)
    assert bp.readings[0]["systolic"] == 120
    with pytest.raises(TypeError):
        bp.readings[0]["systolic"] = 200  # type: ignore[index]
    nested = bp.readings[0]["measurement_status"]
    with pytest.raises(TypeError):
        nested["body_movement"] = False  # type: ignore[index]
    assert (meter.paired, meter.refuse_pairing, meter.corrupt_every) == (False, True, 2)
    assert meter.raw == ("0b0100", "aabb")
    assert meter.interval_s == 1.0
    assert meter.name == "Carebox glucose"


def test_the_patient_system_defaults_to_the_french_national_health_identifier(
    tmp_path: Path,
) -> None:
    # DESIGN: every key but [upstream] url has a default; a value alone is enough
    patient = load(tmp_path, MINIMAL + '[patient]\nvalue = "123456"\n').patient
    assert patient is not None
    assert (patient.system, patient.value) == ("urn:oid:1.2.250.1.213.1.4.8", "123456")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + '[store]\nmax_mb = "big"\n', '[store] max_mb must be an integer, got "big"'),
        (MINIMAL + "[store]\nmax_mb = true\n", "[store] max_mb must be an integer, got true"),
        (MINIMAL + "[store]\nmax_mb = 0\n", "[store] max_mb must be at least 1, got 0"),
        (MINIMAL + "[store]\nmax_gb = 1\n", "unknown key [store] max_gb; did you mean max_mb?"),
        (
            MINIMAL + '[store]\nkey_provider = "tpm"\n',
            '[store] key_provider must be "file" or "rpi-otp", got "tpm"',
        ),
        (
            MINIMAL + "colour = 1\n",
            "unknown key [upstream] colour (known: url, ca, cert, key, topic_prefix, fhir_profile)",
        ),
        (
            "bogus = 1\n" + MINIMAL,
            "unknown key bogus (known: gateway_id, state_dir, patient, ble, upstream, store, "
            "clock, simulator)",
        ),
        ("ble = 3\n" + MINIMAL, "ble must be a table ([ble]), got 3"),
        ('gateway_id = "a/b"\n[upstream]\nurl = "mqtts://h"\n', "gateway_id must be 1-64 letters"),
        ('gateway_id = "x"\n', "[upstream] url is required"),
        ('gateway_id = "x"\n[upstream]\nca = "/ca.pem"\n', "[upstream] url is required"),
        (
            'gateway_id = "x"\n[upstream]\nurl = "mqtt://h:1883"\n',
            "[upstream] url must start with mqtts:// (TLS is always on)",
        ),
        (
            'gateway_id = "x"\n[upstream]\nurl = "mqtts://u:p@h"\n',
            "[upstream] url must not carry a user name",
        ),
        (
            'gateway_id = "x"\n[upstream]\nurl = "mqtts://h:99999"\n',
            "[upstream] url must look like mqtts://host:8883",
        ),
        ('gateway_id = "x"\n[upstream]\nurl = "mqtts://h/path"\n', "[upstream] url must look like"),
        (MINIMAL + 'topic_prefix = "a/+/b"\n', "[upstream] topic_prefix must be topic levels"),
        (
            MINIMAL + 'fhir_profile = "fhir"\n',
            '[upstream] fhir_profile must be "phd" or "ans-mes", got "fhir"',
        ),
        (
            MINIMAL + '[ble]\nbackend = "bluetooth"\n',
            '[ble] backend must be "bluez", "simulated" or "package.module:BackendClass"',
        ),
        (
            MINIMAL + '[clock]\nsource = "ntp"\n',
            '[clock] source must be "auto" or "system", got "ntp"',
        ),
        (
            MINIMAL + '[clock]\ntimezone = "Mars/Olympus"\n',
            "[clock] timezone must be a tz database name",
        ),
        (MINIMAL + '[patient]\nsystem = "urn:x"\n', "[patient] value is missing"),
        (MINIMAL + '[patient]\nsystem = " "\nvalue = "1"\n', "[patient] system is empty"),
        (
            MINIMAL + '[[simulator]]\nkind = "glucose"\naddress = "C0:FF:EE:00:00:01"\n',
            '[[simulator]] tables need [ble] backend = "simulated"',
        ),
    ],
)
def test_errors_are_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text).startswith(expected)


SIM = (
    MINIMAL
    + '[ble]\nbackend = "simulated"\n'
    + '[[simulator]]\nkind = "glucose"\naddress = "C0:FF:EE:00:00:01"\n'
)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            'raw = ["0g"]\n',
            '[[simulator]] #1 raw value 1 must be an even number of hex digits, got "0g"',
        ),
        ('raw = ["abc"]\n', "[[simulator]] #1 raw value 1 must be an even number of hex digits"),
        ("raw = [1]\n", "[[simulator]] #1 raw must be an array of hex strings"),
        ('readings = [{ a = 1 }]\nraw = ["00"]\n', "[[simulator]] #1 has both readings and raw"),
        ("readings = [1]\n", "[[simulator]] #1 readings must be an array of tables"),
        ("interval_s = 0\n", "[[simulator]] #1 interval_s must be a positive number, got 0"),
        ('interval_s = "1"\n', '[[simulator]] #1 interval_s must be a number, got "1"'),
        ("paired = 1\n", "[[simulator]] #1 paired must be true or false, got 1"),
        ("disconnect_after = 0\n", "[[simulator]] #1 disconnect_after must be at least 1"),
        ("speed = 1\n", "unknown key [[simulator]] #1 speed"),
        (
            '[[simulator]]\nkind = "scale"\naddress = "C0:FF:EE:00:00:02"\n',
            '[[simulator]] #2 kind must be "blood_pressure" or "glucose" or "weight_scale"',
        ),
        (
            '[[simulator]]\nkind = "weight_scale"\naddress = "C0:FF:EE:00:00:01"\n',
            "[[simulator]] #2 address C0:FF:EE:00:00:01 is already used by [[simulator]] #1",
        ),
        (
            '[[simulator]]\nkind = "weight_scale"\naddress = "C0FFEE000002"\n',
            "[[simulator]] #2 address must be six hex bytes",
        ),
        ('[[simulator]]\naddress = "C0:FF:EE:00:00:02"\n', "[[simulator]] #2 kind is required"),
    ],
)
def test_simulator_errors(tmp_path: Path, extra: str, expected: str) -> None:
    assert error(tmp_path, SIM + extra).startswith(expected)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    message = error(tmp_path, MINIMAL + "[store\nmax_mb = 1\n")
    assert message.startswith("not valid TOML: ")
    assert "line 4" in message


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file; pass --config FILE"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_where_the_file_comes_from(tmp_path: Path) -> None:
    explicit = tmp_path / "a.toml"
    assert config_path(explicit, {"CAREBOX_CONFIG": "/x.toml"}) == explicit
    assert config_path(None, {"CAREBOX_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert config_path(None, {}) == DEFAULT_CONFIG_PATH
    path = write(tmp_path, MINIMAL)
    assert load_config(env={"CAREBOX_CONFIG": str(path), "TZ": "UTC"}).gateway_id == "cbx-test"


def test_gateway_id_comes_from_the_board_serial_first(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    from_machine_id = derive_gateway_id(tmp_path)
    assert from_machine_id.startswith("cbx-")
    assert len(from_machine_id) == 4 + 16
    # the machine id itself is never exposed
    assert from_machine_id[4:] not in "3d1219c7c4c5404aaa1f6d2a48adfda4"
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(
        "flags\t\t: fpu serialize\nHardware\t: BCM2835\nSerial\t\t: 00000000A1b2C3d4\nModel\t: Pi\n"
    )
    assert derive_gateway_id(tmp_path) == "cbx-a1b2c3d4"
    dt = tmp_path / "sys/firmware/devicetree/base"
    dt.mkdir(parents=True)
    (dt / "serial-number").write_bytes(b"10000000deadbeef\x00")
    assert derive_gateway_id(tmp_path) == "cbx-10000000deadbeef"
    (dt / "serial-number").write_bytes(b"0000000000000000\x00")  # unset: fall through
    assert derive_gateway_id(tmp_path) == "cbx-a1b2c3d4"


def test_gateway_id_without_any_source_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot derive gateway_id"):
        derive_gateway_id(tmp_path)


def test_default_gateway_id_is_derived_from_this_machine(tmp_path: Path) -> None:
    config = load(tmp_path, '[upstream]\nurl = "mqtts://h"\n')
    assert config.gateway_id == derive_gateway_id()


def test_system_timezone(tmp_path: Path) -> None:
    assert system_timezone({"TZ": ":Asia/Tokyo"}, tmp_path) == "Asia/Tokyo"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/localtime").symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    assert system_timezone({}, tmp_path) == "Europe/Berlin"
    (tmp_path / "etc/timezone").write_text("Europe/Lisbon\n")
    assert system_timezone({"TZ": "Not/AZone"}, tmp_path) == "Europe/Lisbon"
    assert system_timezone({}, tmp_path / "nothing") == "UTC"


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/root rw
25 22 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,size=1000k
26 22 0:22 / /var/lib/ram\\040disk rw shared:6 - ramfs none rw
27 22 254:1 / /var/lib rw shared:7 - ext4 /dev/sda1 rw
28 27 0:23 / /var/lib/volatile rw shared:8 - tmpfs tmpfs rw
"""


@pytest.mark.parametrize(
    ("state_dir", "volatile"),
    [
        ("/var/lib/carebox", False),
        ("/var/lib/volatile/carebox", True),
        ("/var/lib/ram disk/carebox", True),
        ("/run/carebox", True),
        ("/srv/carebox", False),
        ("/var/lib/volatileX", False),
    ],
)
def test_state_dir_on_ram_is_refused(state_dir: str, volatile: bool) -> None:
    if volatile:
        with pytest.raises(VolatileStateDir, match=f"state_dir {state_dir} is on (tmpfs|ramfs)"):
            check_state_dir(Path(state_dir), mountinfo=MOUNTINFO)
    else:
        check_state_dir(Path(state_dir), mountinfo=MOUNTINFO)


def test_state_dir_check_reads_this_machines_mounts(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    assert "tmpfs" in Path("/proc/self/mounts").read_text()  # the premise of this test
    with pytest.raises(VolatileStateDir):
        check_state_dir(shm / "carebox-not-created")
    check_state_dir(Path.cwd() / "not-created" / "state")
