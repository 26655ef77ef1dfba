from datetime import datetime, timedelta, timezone

from hypothesis import given, strategies as st

from transforms.timestamps import format_iso_ms, parse_iso_ms

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def test_zone_offsets_are_applied():
    assert parse_iso_ms("2026-11-24T10:00:00.123Z") == parse_iso_ms("2026-11-24T11:00:00.123+01:00")
    assert parse_iso_ms("2026-11-24T10:00:00Z") == parse_iso_ms("2026-11-24T04:30:00-05:30")


def test_fraction_is_truncated_to_milliseconds():
    assert parse_iso_ms("2026-11-24T10:00:00.1239Z") == parse_iso_ms("2026-11-24T10:00:00.123Z")
    assert parse_iso_ms("2026-11-24T10:00:00.1Z") % 1000 == 100


def test_rejects_what_is_not_iso_with_zone():
    for text in ["2026-11-24T10:00:00", "2026-11-24 10:00:00Z", "2026-13-01T00:00:00Z",
                 "2026-02-29T00:00:00Z", "2026-11-24T24:00:00Z", "2026-11-24T10:00:00z",
                 "2026-11-24T10:00:00+1:00", "yesterday", "2026-11-24T10:00:00.Z",
                 "２０26-11-24T10:00:00Z", "2026-11-24T10:00:60Z"]:
        assert parse_iso_ms(text) is None, text
    assert parse_iso_ms("2024-02-29T00:00:00Z") is not None


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_agrees_with_datetime_and_round_trips(moment):
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000, tzinfo=timezone.utc)
    expected_ms = (moment - EPOCH) // timedelta(milliseconds=1)
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z")
    assert parse_iso_ms(text) == expected_ms
    assert format_iso_ms(expected_ms) == text
