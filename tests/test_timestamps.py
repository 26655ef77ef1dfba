from datetime import datetime, timedelta, timezone

from hypothesis import given, strategies as st

from transforms.timestamps import _parse_any, format_iso_ms, parse_iso, parse_iso_ms

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


CANONICAL = "2026-11-24T08:00:00.123Z"
DIGIT_POSITIONS = [i for i, c in enumerate(CANONICAL) if c.isdigit()]


def test_canonical_text_is_reused_and_other_spellings_are_normalized():
    assert parse_iso(CANONICAL)[1] is CANONICAL
    assert parse_iso("2026-11-24T09:00:00.123+01:00") == (parse_iso_ms(CANONICAL), CANONICAL)
    assert parse_iso("2026-11-24T08:00:00.123-00:00") == (parse_iso_ms(CANONICAL), CANONICAL)
    assert parse_iso("0000-01-01T00:00:00.000Z") == (parse_iso_ms("0000-01-01T00:00:00Z"), "0000-01-01T00:00:00.000Z")


def test_fast_path_rejects_non_ascii_digits_in_every_digit_position():
    for position in DIGIT_POSITIONS:
        for char in ["٣", "３", "²", "\U0001d7d9", " ", "+", "-", "a"]:
            text = CANONICAL[:position] + char + CANONICAL[position + 1:]
            assert parse_iso(text) is None, text


@given(st.lists(st.tuples(st.sampled_from(range(24)), st.sampled_from("0123456789-T:.Z+ 9٣")), max_size=3),
       st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_fast_path_agrees_with_the_exact_parser(edits, moment):
    text = list(f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z")
    for position, char in edits:
        text[position] = char
    for text in ("".join(text), "".join(text[:23]) + "+00:00", "".join(text[:23]) + "-00:00"):
        exact = _parse_any(text)
        assert parse_iso(text) == (None if exact is None else (exact, format_iso_ms(exact)))
