from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers import MalformedValue, decode
from device_drivers.current_time import AdjustReason, CurrentTime
from device_drivers.device_information import SystemId
from device_drivers.glucose import (
    ConcentrationUnit,
    GlucoseMeasurement,
    GlucoseMeasurementContext,
    GlucoseType,
    Meal,
    SampleLocation,
)
from device_drivers.racp import FilterType, OpCode, Operator, Racp, ResponseCode
from device_drivers.simulators.base import AttError, AttErrorCode, Emit, Security
from device_drivers.simulators.glucose_meter import AttCodeSet, GlucoseMeter
from tests.device_drivers.codec_contract import FUZZ

NOW = datetime(2026, 1, 1, 12, 0, 0)


def meter(records: int = 0, **options: object) -> GlucoseMeter:
    device = GlucoseMeter("C0:11:22:33:44:55", "Sim Meter", lambda: NOW, **options)  # type: ignore[arg-type]
    for i in range(records):
        device.add_record(reading(i))
    for uuid in (0x2A18, 0x2A34, 0x2A52):
        assert device.subscribed(uuid) == ()
    return device


def reading(i: int, minutes: int = 0) -> GlucoseMeasurement:
    return GlucoseMeasurement(
        0,
        datetime(2025, 12, 1, 8, 0, 0) + timedelta(hours=i),
        time_offset=minutes,
        concentration=Decimal(90 + i % 100).scaleb(-5),
        concentration_unit=ConcentrationUnit.KG_PER_L,
        type=GlucoseType.CAPILLARY_PLASMA,
        sample_location=SampleLocation.FINGER,
    )


def response(emits: Sequence[Emit]) -> Racp:
    last = emits[-1]
    assert last.uuid == 0x2A52
    assert last.indicate
    value = Racp.from_bytes(last.value)
    assert value.is_response
    return value


def code_of(emits: Sequence[Emit]) -> ResponseCode | None:
    return response(emits).response_code


def sequence_numbers(emits: Sequence[Emit]) -> list[int]:
    out = []
    for emit in emits:
        if emit.uuid == 0x2A18:
            assert not emit.indicate
            out.append(GlucoseMeasurement.from_bytes(emit.value).sequence_number)
    return out


def finish(device: GlucoseMeter, emits: Sequence[Emit]) -> None:
    device.confirmed(emits[-1])
    assert not device.procedure_running


def test_gatt_table() -> None:
    device = meter()
    table = {c.uuid: (s.uuid, c) for s in device.services() for c in s.characteristics}
    assert device.advertised_services() == (0x1808,)
    for uuid, props in [
        (0x2A18, {"notify"}),
        (0x2A34, {"notify"}),
        (0x2A52, {"write", "indicate"}),
    ]:
        service, spec = table[uuid]
        assert service == 0x1808
        assert spec.properties == props
        assert spec.security is Security.ENCRYPTED
    assert table[0x2A51][1].properties == {"read"}
    assert table[0x2A2B][0] == 0x1805
    assert table[0x2A2B][1].properties == {"read", "write"}
    assert {u for u, (s, _) in table.items() if s == 0x180A} == {
        0x2A29,
        0x2A24,
        0x2A25,
        0x2A26,
        0x2A23,
    }
    assert table[0x2A19][0] == 0x180F


def test_report_all_sends_records_then_contexts_then_the_response() -> None:
    device = meter()
    device.add_record(reading(0))
    seq = device.add_record(reading(1), GlucoseMeasurementContext(999, meal=Meal.FASTING))
    device.add_record(reading(2))
    emits = device.write(0x2A52, bytes(Racp.report_all_records()))
    assert [e.uuid for e in emits] == [0x2A18, 0x2A18, 0x2A34, 0x2A18, 0x2A52]
    assert sequence_numbers(emits) == [0, 1, 2]
    with_context = GlucoseMeasurement.from_bytes(emits[1].value)
    assert with_context.context_follows
    context = GlucoseMeasurementContext.from_bytes(emits[2].value)
    assert context.sequence_number == seq == 1
    assert context.meal is Meal.FASTING
    assert not GlucoseMeasurement.from_bytes(emits[0].value).context_follows
    assert emits[-1].value.hex() == "06000101"
    assert device.procedure_running
    finish(device, emits)


@pytest.mark.parametrize(
    ("request_value", "expected"),
    [
        (Racp.report_records_from(3), [3, 4]),
        (Racp.report_records_up_to(1), [0, 1]),
        (Racp.report_records_between(1, 3), [1, 2, 3]),
        (Racp.report_first_record(), [0]),
        (Racp.report_last_record(), [4]),
        (Racp.report_all_records(), [0, 1, 2, 3, 4]),
    ],
)
def test_report_operators(request_value: Racp, expected: list[int]) -> None:
    device = meter(5)
    emits = device.write(0x2A52, bytes(request_value))
    assert sequence_numbers(emits) == expected
    assert code_of(emits) is ResponseCode.SUCCESS


def test_report_number_of_records() -> None:
    device = meter(5)
    for request_value, count in [
        (Racp.report_number_of_records(), 5),
        (Racp.report_number_of_records(3), 2),
        (Racp.report_number_of_records(9), 0),
    ]:
        emits = device.write(0x2A52, bytes(request_value))
        assert len(emits) == 1
        assert response(emits) == Racp.number_of_records_response(count)
        finish(device, emits)


@pytest.mark.parametrize(
    ("hex_value", "expected"),
    [
        ("0001", ResponseCode.OP_CODE_NOT_SUPPORTED),  # reserved op code 0
        ("0500", ResponseCode.OP_CODE_NOT_SUPPORTED),  # a response written by the collector
        ("06000101", ResponseCode.OP_CODE_NOT_SUPPORTED),
        ("0901", ResponseCode.OP_CODE_NOT_SUPPORTED),
        ("01", ResponseCode.INVALID_OPERATOR),  # operator missing
        ("0100", ResponseCode.INVALID_OPERATOR),  # null operator
        ("0400", ResponseCode.INVALID_OPERATOR),
        ("0107", ResponseCode.OPERATOR_NOT_SUPPORTED),
        ("01ff", ResponseCode.OPERATOR_NOT_SUPPORTED),
        ("010101", ResponseCode.INVALID_OPERAND),  # "all" takes no operand
        ("010503", ResponseCode.INVALID_OPERAND),
        ("0103", ResponseCode.INVALID_OPERAND),  # filter type missing
        ("010301", ResponseCode.INVALID_OPERAND),  # bound missing
        ("01030105", ResponseCode.INVALID_OPERAND),  # bound truncated
        ("0103010500ff", ResponseCode.INVALID_OPERAND),  # trailing octet
        ("01040103000100", ResponseCode.INVALID_OPERAND),  # min 3 > max 1
        ("0103020000000000000000", ResponseCode.INVALID_OPERAND),  # unknown date
        ("0103030500", ResponseCode.OPERAND_NOT_SUPPORTED),  # reserved filter type
        ("010302e1070c1f173b3b", ResponseCode.OPERAND_NOT_SUPPORTED),  # no time filter
        ("0103016400", ResponseCode.NO_RECORDS_FOUND),  # >= 100
        ("0203016400", ResponseCode.NO_RECORDS_FOUND),  # delete >= 100
    ],
)
def test_every_error_response(hex_value: str, expected: ResponseCode) -> None:
    device = meter(3)
    emits = device.write(0x2A52, bytes.fromhex(hex_value))
    assert len(emits) == 1
    answer = response(emits)
    assert answer.response_code is expected
    assert answer.request_op_code == int(hex_value[:2], 16)
    assert len(device.records) == 3
    finish(device, emits)


def test_no_records_found_on_an_empty_meter() -> None:
    emits = meter().write(0x2A52, bytes(Racp.report_all_records()))
    assert code_of(emits) is ResponseCode.NO_RECORDS_FOUND


def test_procedure_not_completed_after_an_interrupted_report() -> None:
    device = meter(5, interrupt_after=2)
    emits = device.write(0x2A52, bytes(Racp.report_all_records()))
    assert sequence_numbers(emits) == [0, 1]
    assert code_of(emits) is ResponseCode.PROCEDURE_NOT_COMPLETED
    finish(device, emits)
    assert device.advertising()  # the meter still holds records the collector has not had


def test_abort_when_nothing_runs_is_unsuccessful() -> None:
    device = meter(2)
    emits = device.write(0x2A52, bytes(Racp.abort()))
    assert response(emits) == Racp.response(OpCode.ABORT_OPERATION, ResponseCode.ABORT_UNSUCCESSFUL)


def test_abort_a_running_procedure() -> None:
    device = meter(3)
    report = device.write(0x2A52, bytes(Racp.report_all_records()))
    assert device.procedure_running
    emits = device.write(0x2A52, bytes(Racp.abort()))
    assert response(emits) == Racp.response(OpCode.ABORT_OPERATION, ResponseCode.SUCCESS)
    device.confirmed(report[-1])  # the aborted procedure's answer no longer ends anything
    assert device.procedure_running
    finish(device, emits)
    again = device.write(0x2A52, bytes(Racp.report_last_record()))
    assert sequence_numbers(again) == [2]


@pytest.mark.parametrize(
    ("hex_value", "expected"),
    [("0301", ResponseCode.INVALID_OPERATOR), ("030000", ResponseCode.INVALID_OPERAND)],
)
def test_malformed_abort_while_running(hex_value: str, expected: ResponseCode) -> None:
    device = meter(1)
    device.write(0x2A52, bytes(Racp.report_all_records()))
    emits = device.write(0x2A52, bytes.fromhex(hex_value))
    assert code_of(emits) is expected


@pytest.mark.parametrize(
    ("codes", "in_progress", "cccd"),
    [(AttCodeSet.GLS, 0x80, 0x81), (AttCodeSet.COMMON, 0xFE, 0xFD)],
)
def test_att_errors(codes: AttCodeSet, in_progress: int, cccd: int) -> None:
    device = meter(3, att_codes=codes)
    first = device.write(0x2A52, bytes(Racp.report_all_records()))
    for request_value in (Racp.report_all_records(), Racp.report_number_of_records(), b"\x09"):
        with pytest.raises(AttError) as info:
            device.write(0x2A52, bytes(request_value))
        assert info.value.code == in_progress
    finish(device, first)
    assert code_of(device.write(0x2A52, bytes(Racp.report_first_record()))) is ResponseCode.SUCCESS

    device.disconnected()  # abandons the running procedure and the link's CCCDs
    assert not device.procedure_running
    with pytest.raises(AttError) as info:
        device.write(0x2A52, bytes(Racp.report_all_records()))
    assert info.value.code == cccd
    device.subscribed(0x2A52)
    assert code_of(device.write(0x2A52, bytes(Racp.report_all_records()))) is ResponseCode.SUCCESS


def test_notifications_only_for_enabled_characteristics() -> None:
    device = GlucoseMeter("C0:11:22:33:44:55", "m", lambda: NOW)
    device.add_record(reading(0), GlucoseMeasurementContext(0, meal=Meal.BEDTIME))
    device.subscribed(0x2A52)
    device.subscribed(0x2A18)
    emits = device.write(0x2A52, bytes(Racp.report_all_records()))
    assert [e.uuid for e in emits] == [0x2A18, 0x2A52]
    finish(device, emits)
    device.unsubscribed(0x2A18)
    assert [e.uuid for e in device.write(0x2A52, bytes(Racp.report_all_records()))] == [0x2A52]


def test_sequence_numbers_wrap() -> None:
    device = meter(next_sequence_number=0xFFFE)
    assert [device.add_record(reading(i)) for i in range(3)] == [0xFFFE, 0xFFFF, 0]
    emits = device.write(0x2A52, bytes(Racp.report_all_records()))
    assert sequence_numbers(emits) == [0xFFFE, 0xFFFF, 0]
    finish(device, emits)
    # A >= filter compares the stored uint16: the record after the wrap is not ">= 0xFFFE".
    emits = device.write(0x2A52, bytes(Racp.report_records_from(0xFFFE)))
    assert sequence_numbers(emits) == [0xFFFE, 0xFFFF]
    finish(device, emits)
    emits = device.write(0x2A52, bytes(Racp.report_last_record()))
    assert sequence_numbers(emits) == [0]


def test_report_all_of_500_records() -> None:
    device = meter(500)
    emits = device.write(0x2A52, bytes(Racp.report_all_records()))
    assert len(emits) == 501
    assert sequence_numbers(emits) == list(range(500))
    assert code_of(emits) is ResponseCode.SUCCESS
    finish(device, emits)
    count = device.write(0x2A52, bytes(Racp.report_number_of_records()))
    assert response(count).number_of_records == 500


def test_delete_only_when_asked() -> None:
    device = meter(5)
    for request_value in (Racp.report_all_records(), Racp.report_number_of_records()):
        finish(device, device.write(0x2A52, bytes(request_value)))
    assert len(device.records) == 5
    delete_from_3 = Racp(
        OpCode.DELETE_STORED_RECORDS,
        Operator.GREATER_THAN_OR_EQUAL_TO,
        FilterType.SEQUENCE_NUMBER,
        min=3,
    )
    emits = device.write(0x2A52, bytes(delete_from_3))
    assert emits[-1].value.hex() == "06000201"
    assert [r.sequence_number for r in device.records] == [0, 1, 2]
    finish(device, emits)
    finish(device, device.write(0x2A52, bytes(Racp.delete_all_records())))
    assert not device.records
    assert code_of(device.write(0x2A52, bytes(Racp.report_all_records()))) is (
        ResponseCode.NO_RECORDS_FOUND
    )


def test_user_facing_time_filter_when_supported() -> None:
    device = meter(user_facing_time_filter=True)
    for i in range(4):
        device.add_record(reading(i, minutes=-30))  # user facing time = base - 30 min
    start = datetime(2025, 12, 1, 8, 30)  # reading(1) shows 08:30
    request_value = Racp(
        OpCode.REPORT_STORED_RECORDS,
        Operator.WITHIN_RANGE_OF,
        FilterType.USER_FACING_TIME,
        min=start,
        max=start + timedelta(hours=1),
    )
    emits = device.write(0x2A52, bytes(request_value))
    assert sequence_numbers(emits) == [1, 2]


def test_corrupt_every_truncates_measurements() -> None:
    device = meter(4, corrupt_every=2)
    emits = device.write(0x2A52, bytes(Racp.report_all_records()))
    values = [e.value for e in emits if e.uuid == 0x2A18]
    assert [len(v) == 1 for v in values] == [False, True, False, True]
    with pytest.raises(MalformedValue):
        decode(0x2A18, values[1])
    assert code_of(emits) is ResponseCode.SUCCESS


def test_raw_records_are_sent_verbatim() -> None:
    device = meter()
    raw = bytes.fromhex("1b2a00e807030f0e1e2dffff62b0120100")
    context = bytes.fromhex("022a0003")
    assert device.add_raw(raw, context) == 42
    assert device.add_raw(b"\x00") is None  # too short to say its number
    assert device.add_record(reading(0)) == 43
    emits = device.write(0x2A52, bytes(Racp.report_all_records()))
    assert [e.value for e in emits[:3]] == [raw, context, b"\x00"]
    finish(device, emits)
    emits = device.write(0x2A52, bytes(Racp.report_records_from(43)))
    assert sequence_numbers(emits) == [43]


def test_advertises_until_a_report_is_confirmed() -> None:
    device = meter(2)
    assert device.advertising()
    emits = device.write(0x2A52, bytes(Racp.report_records_from(1)))
    assert device.advertising()
    finish(device, emits)
    assert not device.advertising()
    device.measure(Decimal("0.0055"), ConcentrationUnit.MOL_PER_L)
    assert device.advertising()
    newest = GlucoseMeasurement.from_bytes(device.records[-1].measurement)
    assert newest.base_time == NOW
    assert newest.concentration == Decimal("0.0055")


def test_current_time_read_and_write() -> None:
    device = meter()
    assert CurrentTime.from_bytes(device.read(0x2A2B)).timestamp == NOW
    later = NOW + timedelta(minutes=7)
    set_to = CurrentTime.at(later, AdjustReason.MANUAL_TIME_UPDATE)
    assert device.write(0x2A2B, bytes(set_to)) == ()
    read_back = CurrentTime.from_bytes(device.read(0x2A2B))
    assert read_back.timestamp == later
    assert read_back.adjust_reason == AdjustReason.MANUAL_TIME_UPDATE
    assert device.now() == later
    for bad in (b"\x01", bytes(10)):
        with pytest.raises(AttError) as info:
            device.write(0x2A2B, bad)
        assert info.value.code == AttErrorCode.OUT_OF_RANGE


def test_information_and_feature_reads() -> None:
    device = meter(
        manufacturer="Acme",
        model_number="GM 2",
        serial_number="SN9",
        firmware_revision="4.1",
        battery_level=42,
    )
    assert device.read(0x2A29) == b"Acme"
    assert device.read(0x2A24) == b"GM 2"
    assert device.read(0x2A25) == b"SN9"
    assert device.read(0x2A26) == b"4.1"
    assert len(device.read(0x2A23)) == 8
    assert device.read(0x2A19) == bytes([42])
    assert decode(0x2A51, device.read(0x2A51)) == device.feature
    for uuid in (0x2A18, 0x2A52):
        with pytest.raises(AttError) as info:
            device.read(uuid)
        assert info.value.code == AttErrorCode.READ_NOT_PERMITTED
    with pytest.raises(AttError) as info:
        device.write(0x2A51, b"\x00\x00")
    assert info.value.code == AttErrorCode.WRITE_NOT_PERMITTED
    with pytest.raises(AttError) as info:
        device.write(0x2A52, b"")
    assert info.value.code == AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH
    with pytest.raises(ValueError, match="battery"):
        meter(battery_level=101)


@FUZZ
@given(writes=st.lists(st.binary(min_size=1, max_size=12), max_size=6), confirm=st.booleans())
def test_any_racp_write_is_answered_or_refused(writes: list[bytes], confirm: bool) -> None:
    device = meter(4)
    for data in writes:
        try:
            emits = device.write(0x2A52, data)
        except AttError as exc:
            assert exc.code == AttErrorCode.GLS_PROCEDURE_ALREADY_IN_PROGRESS
            continue
        answer = response(emits)
        for emit in emits[:-1]:
            decode(emit.uuid, emit.value)
        if answer.op_code == OpCode.RESPONSE_CODE:
            assert answer.request_op_code == data[0]
        if confirm:
            finish(device, emits)


def test_two_meters_are_two_devices() -> None:
    """A meter's System ID comes from its address (FF-FE inserted), as the cuff's and the
    scale's do: two simulated meters are two devices upstream, not one."""
    a = GlucoseMeter("C0:FF:EE:0C:00:02", "A", lambda: NOW)
    b = GlucoseMeter("C0:FF:EE:0C:00:06", "B", lambda: NOW)
    assert a.system_id != b.system_id
    assert a.system_id is not None
    assert SystemId.from_bytes(a.system_id) == SystemId.from_bd_addr("C0:FF:EE:0C:00:02")
    chosen = GlucoseMeter("C0:FF:EE:0C:00:07", "C", lambda: NOW, system_id=bytes(range(8)))
    assert chosen.system_id == bytes(range(8))
