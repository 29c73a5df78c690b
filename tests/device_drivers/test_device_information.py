from __future__ import annotations

from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers import MalformedValue, UnencodableValue, decode, to_json
from device_drivers.codec import InvalidField, from_json
from device_drivers.device_information import (
    STRING_CHARACTERISTICS,
    BatteryLevel,
    FirmwareRevisionString,
    HardwareRevisionString,
    ManufacturerNameString,
    ModelNumberString,
    PnpId,
    SerialNumberString,
    SoftwareRevisionString,
    SystemId,
    VendorIdSource,
)
from tests.device_drivers.codec_contract import FUZZ, CodecContract

texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


class _StringContract(CodecContract):
    # A string is the whole value: any prefix that cuts no character is a shorter string.
    prefixes_fail = False
    empty_fails = False


class TestManufacturerName(_StringContract):
    codec = ManufacturerNameString
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("4f6d726f6e", {"value": "Omron"}),
        ("", {"value": ""}),
        # "Médical" with a two-octet é (C3 A9).
        ("4dc3a9646963616c", {"value": "Médical"}),
    ]
    values = st.builds(ManufacturerNameString, texts)


class TestModelNumber(_StringContract):
    codec = ModelNumberString
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("4850432d37303832", {"value": "HPC-7082"})
    ]
    values = st.builds(ModelNumberString, texts)


class TestSerialNumber(_StringContract):
    codec = SerialNumberString
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [("3030313233", {"value": "00123"})]
    values = st.builds(SerialNumberString, texts)


class TestHardwareRevision(_StringContract):
    codec = HardwareRevisionString
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [("312e30", {"value": "1.0"})]
    values = st.builds(HardwareRevisionString, texts)


class TestFirmwareRevision(_StringContract):
    codec = FirmwareRevisionString
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [("322e312e33", {"value": "2.1.3"})]
    values = st.builds(FirmwareRevisionString, texts)


class TestSoftwareRevision(_StringContract):
    codec = SoftwareRevisionString
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [("76342e32", {"value": "v4.2"})]
    values = st.builds(SoftwareRevisionString, texts)


class TestSystemId(CodecContract):
    codec = SystemId
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        # DIS's example: OUI 0x123456, company-assigned 0x9ABCDE -> 0x123456FFFE9ABCDE,
        # sent least significant octet first.
        (
            "debc9afeff563412",
            {
                "manufacturer_identifier": 0xFFFE9ABCDE,
                "organizationally_unique_identifier": 0x123456,
                "eui64": "123456FFFE9ABCDE",
            },
        ),
    ]
    values = st.builds(SystemId, st.integers(0, (1 << 40) - 1), st.integers(0, (1 << 24) - 1))


class TestPnpId(CodecContract):
    codec = PnpId
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        # Bluetooth SIG company 0x020E, product 0x0001, version 0x0110.
        (
            "010e0201001001",
            {
                "vendor_id_source": 1,
                "vendor_id": 0x020E,
                "product_id": 1,
                "product_version": 0x0110,
            },
        ),
        # A reserved source code is kept, not refused.
        (
            "07ffffffffffff",
            {
                "vendor_id_source": 7,
                "vendor_id": 0xFFFF,
                "product_id": 0xFFFF,
                "product_version": 0xFFFF,
            },
        ),
    ]
    values = st.builds(
        PnpId,
        vendor_id_source=st.integers(0, 255).map(VendorIdSource),
        vendor_id=st.integers(0, 0xFFFF),
        product_id=st.integers(0, 0xFFFF),
        product_version=st.integers(0, 0xFFFF),
    )


class TestBatteryLevel(CodecContract):
    codec = BatteryLevel
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("00", {"battery_level": 0}),
        ("55", {"battery_level": 85}),
        ("64", {"battery_level": 100}),
    ]
    values = st.builds(BatteryLevel, st.integers(0, 100))


@pytest.mark.parametrize("uuid", [*STRING_CHARACTERISTICS, 0x2A23, 0x2A50, 0x2A19])
@FUZZ
@given(data=st.binary(max_size=24))
def test_any_bytes_decode_or_raise_malformed(uuid: int, data: bytes) -> None:
    try:
        value = decode(uuid, data)
    except MalformedValue as exc:
        assert exc.characteristic == uuid
        assert exc.data == data
        return
    assert isinstance(value.__bytes__(), bytes)


@pytest.mark.parametrize(
    ("hex_value", "offset"),
    [
        ("4f6dff", 2),
        ("c3", 0),
        ("41c328", 1),
        ("eda080", 0),
    ],  # ff, cut é, bad continuation, surrogate
)
def test_invalid_utf8_is_malformed_at_the_octet(hex_value: str, offset: int) -> None:
    with pytest.raises(MalformedValue, match="2A24") as info:
        decode(0x2A24, bytes.fromhex(hex_value))
    assert info.value.offset == offset


def test_nul_padding_ends_the_string() -> None:
    assert decode(0x2A29, b"Omron\x00\x00\x00") == ManufacturerNameString("Omron")
    with pytest.raises(UnencodableValue, match="NUL"):
        bytes(ManufacturerNameString("a\x00b"))


def test_string_types_are_distinct() -> None:
    assert ModelNumberString("x") != SerialNumberString("x")
    assert {cls.UUID for cls in STRING_CHARACTERISTICS.values()} == {
        0x2A24,
        0x2A25,
        0x2A26,
        0x2A27,
        0x2A28,
        0x2A29,
    }


@pytest.mark.parametrize("hex_value", ["65", "ff"])
def test_battery_level_above_100_is_malformed(hex_value: str) -> None:
    with pytest.raises(MalformedValue, match="battery_level") as info:
        decode(0x2A19, bytes.fromhex(hex_value))
    assert str(int(hex_value, 16)) not in info.value.reason  # the reason names no value


def test_battery_level_above_100_is_unencodable() -> None:
    with pytest.raises(UnencodableValue):
        bytes(BatteryLevel(101))


def test_eui64_from_bluetooth_address() -> None:
    # FHIR.md: BT 00-1C-05-FF-E8-74 <-> EUI-64 00-1C-05-FF-FE-FF-E8-74.
    sid = SystemId.from_bd_addr("00:1C:05:FF:E8:74")
    assert sid.eui64 == "001C05FFFEFFE874"
    # On the wire, least significant octet first: the order the PHD IG's example prints.
    assert bytes(sid).hex().upper() == "74E8FFFEFF051C00"
    assert SystemId.from_eui64("00-1C-05-FF-FE-FF-E8-74") == sid
    with pytest.raises(ValueError, match="Bluetooth address"):
        SystemId.from_bd_addr("00:1C:05:FF:E8")
    with pytest.raises(ValueError, match="EUI-64"):
        SystemId.from_eui64("001C05")


def test_system_id_ranges() -> None:
    with pytest.raises(UnencodableValue, match="uint40"):
        SystemId(1 << 40, 0)
    with pytest.raises(UnencodableValue, match="uint24"):
        SystemId(0, 1 << 24)


def test_system_id_from_json_checks_the_derived_eui64() -> None:
    sid = SystemId(0xFFFE9ABCDE, 0x123456)
    assert from_json(SystemId, to_json(sid)) == sid  # type: ignore[arg-type]
    with pytest.raises(InvalidField) as info:
        from_json(
            SystemId,
            {
                "manufacturer_identifier": 1,
                "organizationally_unique_identifier": 2,
                "eui64": "123456FFFE9ABCDE",
            },
        )
    assert info.value.field == "eui64"
