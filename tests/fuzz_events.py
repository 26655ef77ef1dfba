"""Hypothesis strategies for hostile context events (issue 22, item 1): structurally valid events with
extreme values in every field, and mutated bytes of valid events.

Why a serializer of our own: `json.dumps` cannot write what producers can send and what broke the job
before (`18446744073709551616`, `1e300` where an integer is expected, duplicate keys, `1E+2`, escaped
surrogate pairs). A JSON value here is a plain Python value, a `Num` (a number token written verbatim) or
a `Pairs` (an object written pair by pair, duplicates allowed).

Big things (thousands of attributes, deep nesting, long strings) are built from a drawn size and a drawn
seed part, not drawn element by element: hypothesis stays fast and its examples stay small to shrink.
"""
from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from transforms.timestamps import format_iso_ms

# ---- JSON text of our own ----


class Raw(str):
    """JSON text written as is: a number token (`1e300`, `18446744073709551616`, `-0`, `1E+2`), or a big
    value encoded once when drawn (thousands of entries are not walked again at each serialization)."""


Num = Raw


class Pairs(tuple):
    """A JSON object as (key, value) pairs: keys may repeat, order is kept."""


class Deep(tuple):
    """(depth, key or None, leaf): `leaf` inside `depth` one-entry objects (or lists when key is None),
    written without recursion (depths past Python's recursion limit are the point)."""


def to_json(value: Any, ascii_only: bool = False, spaced: bool = False) -> str:
    """JSON text of a value built by these strategies; `ascii_only` escapes every non-ASCII character
    (astral ones as surrogate pairs), `spaced` puts blanks around separators."""
    colon, comma = (" : ", " , ") if spaced else (":", ",")

    def enc(v: Any) -> str:
        if isinstance(v, Raw):
            return str(v)
        if v is None:
            return "null"
        if v is True:
            return "true"
        if v is False:
            return "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return repr(v)  # finite floats only: repr is valid JSON (1e+300, -0.0, 5e-324)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=ascii_only)
        if isinstance(v, Deep):
            depth, key, leaf = v
            head = "[" if key is None else "{" + enc(key) + colon
            tail = "]" if key is None else "}"
            return head * depth + enc(leaf) + tail * depth
        if isinstance(v, Pairs):
            return "{" + comma.join(enc(k) + colon + enc(x) for k, x in v) + "}"
        if isinstance(v, dict):
            return "{" + comma.join(enc(k) + colon + enc(x) for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + comma.join(enc(x) for x in v) + "]"
        raise TypeError(f"not a JSON value: {type(v).__name__}")

    return enc(value)


def _one_in(draw: st.DrawFn, n: int) -> bool:
    """True with probability about 1/n. Not `integers(0, n-1) == 0`: hypothesis draws the bounds of a
    range far more often than the middle, which made redeliveries, deep values and mutations common."""
    return draw(st.integers(0, 2 * n - 1)) == n


# ---- scalars at the edges ----

_INT_EDGES = [0, 1, -1, 2**31 - 1, 2**31, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
              2**64 + 1, -(2**53), -(2**63), -(2**63) - 1, -(2**64), 10**18, 10**19, 10**20, 10**100]
_FLOAT_EDGES = [0.0, -0.0, 1.0, 0.5, 1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324,
                2.2250738585072014e-308, 2.225073858507201e-308, 9007199254740992.0, 9007199254740993.0,
                1e16, 1e22, 9.223372036854776e18, 1.8446744073709552e19, 3.0, 1e-7, 0.1]
_NUMBER_TOKENS = ["1e300", "-1e300", "1E2", "1e+2", "1e-400", "-0", "0e0", "0.0e-0", "18446744073709551616",
                  "18446744073709551615", "9223372036854775808", "-9223372036854775809",
                  "1.0000000000000000000000001", "0.99999999999999999999", "2.5e-324",
                  "1" + "0" * 400, "123456789012345678901234567890.5", "4.9406564584124654e-324"]

integers = st.one_of(st.sampled_from(_INT_EDGES), st.integers(), st.integers(-(2**70), 2**70))
floats = st.one_of(st.sampled_from(_FLOAT_EDGES), st.floats(allow_nan=False, allow_infinity=False))
number_tokens = st.sampled_from(_NUMBER_TOKENS).map(Num)
numbers = st.one_of(integers, floats, number_tokens)

# Characters producers send by accident or on purpose: NUL and controls, line separators JSON allows raw
# (U+2028, NEL), bidi overrides, BOM, noncharacters, emoji (astral: a surrogate pair in \u escapes),
# combining marks, Redis glob and hash-tag characters, our own separators (tab, colon, pipe, dot).
ODD_CHARS = ("\x00", "\x01", "\x1f", "\x7f", "\x85", "\t", "\n", "\r", "\x0b", "\x0c", "\u2028", "\u2029",
             "\u202e", "\u200f", "\ufeff", "\uffff", "\ufffe", "\U0010ffff", "\U0001f600", "\U0001f468", "\u200d",
             "\u0301", "\u0627", "\u4e2d", "*", "?", "[", "]", "{", "}", "\\", '"', ":", "|", ".", "/", " ", "$", "%")
odd_text = st.text(alphabet=st.one_of(st.sampled_from(ODD_CHARS), st.characters(codec="utf-8")), max_size=12)


_pieces = st.text(alphabet=st.sampled_from(ODD_CHARS + ("a", "Z", "0")), min_size=1, max_size=4)


@st.composite
def long_text(draw: st.DrawFn, max_len: int = 20_000) -> str:
    """A long string made of a drawn piece repeated: big enough to matter, cheap to draw and shrink."""
    piece = draw(_pieces)
    return (piece * (draw(st.integers(1, max_len)) // len(piece) + 1))[: max_len]


texts = st.one_of(odd_text, odd_text, long_text())
nonempty_texts = st.one_of(odd_text.filter(bool), long_text())
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
short_scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)  # repeated by the thousand: no long text

# Keys that look like ours: contract fields, view/hash field names, ES metadata, Redis patterns.
OUR_NAMES = ("eventId", "timestamp", "eventType", "source", "contextDelta", "userId", "updates", "current",
             "previous", "confidence", "propagationRules", "ttl", "key", "version", "attributes", "category",
             "targetModels", "digest", "a:", "a:segment", "@ctxsync", "_id", "_source", "_index", "__proto__",
             "constructor", "aggregates", "applied", "stale", "violation", "conflict", "rawEncoding", "origin",
             "ctx:*:{u}", "*", "?", "[a-z]", "{", "}", "", " ", "\t", "\n", "a.b", "a..b", ".", "segment.x")
keys = st.one_of(st.sampled_from(OUR_NAMES), odd_text, odd_text, long_text(3000))
MAPPED = ("riskTolerance", "portfolioValue", "creditScore", "segment", "lastAction", "preferredChannel",
          "engagementScore", "lastLogin", "timezone", "sessionLength")


_small_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=6)
_depths = st.one_of(st.integers(1, 8), st.integers(1, 8), st.integers(1, 8), st.integers(1, 300), st.sampled_from((19, 20, 21, 100, 127, 128, 129, 253, 254, 255, 256,
                                                          511, 512, 1000, 1023, 1024, 1025, 2000)))


@st.composite
def nested(draw: st.DrawFn) -> Any:
    """An unknown extra field's value: deep (up to past orjson's limits), wide, or small and odd."""
    shape = draw(st.sampled_from(("small",) * 12 + ("wide", "deep_list", "deep_object")))
    if shape == "small":
        return draw(_small_values)
    if shape == "wide":
        n = draw(st.integers(0, 3000))
        leaf = to_json(draw(short_scalars))
        if draw(st.booleans()):
            return Raw("{" + ",".join(f'"k{i}":{leaf}' for i in range(n)) + "}")
        return Raw("[" + ",".join([leaf] * n) + "]")
    depth = draw(_depths)
    return Deep((depth, None if shape == "deep_list" else draw(keys), draw(scalars)))


# ---- the parts of an event ----


_zones = st.one_of(st.just("Z"), st.sampled_from(("+00:00", "-00:00", "+23:59", "-23:59", "+14:00", "-12:00",
                                                  "+05:45")), st.sampled_from(("+24:00", "z", "", "+0100")),
                   st.builds(lambda s, h, m: f"{s}{h:02d}:{m:02d}", st.sampled_from("+-"),
                             st.integers(0, 23), st.integers(0, 59)))


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """ISO-8601 with a zone at odd offsets, fractions of 0-9 digits, years at the edges (0000, 9999),
    leap days, the epoch; now and then one the contract refuses (no zone, hour 24, Feb 30)."""
    year = draw(st.one_of(st.sampled_from((0, 1, 1969, 1970, 2000, 2024, 2026, 9999,)), st.integers(0, 2026)))
    month = draw(st.integers(1, 12))
    day = draw(st.sampled_from((1, 28, 29, 30, 31,)) | st.integers(1, 31))
    hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    digits = draw(st.integers(0, 9))
    fraction = "" if digits == 0 else "." + str(draw(st.integers(0, 10**digits - 1))).zfill(digits)
    zone = draw(_zones)
    sep = draw(st.sampled_from(("T",) * 8 + ("t", " ")))
    return f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"


# Canonical times well before any wall clock the suite runs on: engines validate against the real clock.
CANONICAL_TIMES = st.integers(1_600_000_000_000, 1_790_000_000_000).map(format_iso_ms)
any_timestamp = st.one_of(CANONICAL_TIMES, CANONICAL_TIMES, CANONICAL_TIMES, timestamps())

event_ids = st.one_of(
    st.uuids().map(str), st.uuids().map(str),  # distinct: duplicates come from the stream's reused ids
    nonempty_texts.map(lambda s: s[:128]),
    st.sampled_from(("x" * 128, "\U0001f600" * 128, "\x00" * 128, "x" * 129, "", " ",)),
)
confidences = st.one_of(st.sampled_from((0, 1, 0.0, -0.0, 1.0, 5e-324, 0.5, True, 1.0000000000000002, -5e-324,)),
                        st.floats(0, 1), st.sampled_from(("1e-400", "0.99999999999999999999", "1.00000000000000001",
                                                          "1E0", "0e5", "-0",)).map(Num))
expected_versions = st.one_of(st.integers(0, 5), st.sampled_from(_INT_EDGES + [3.0, 2.0**63, 1e300, -0.0]),
                              number_tokens)
ttls = st.one_of(st.integers(1, 10**6), st.integers(1, 10**12), st.sampled_from(_INT_EDGES + [10**12, 10**12 + 1, 3600.0, 1e12, 1e300]),
                 number_tokens)


_attribute_names = st.lists(st.one_of(st.sampled_from(MAPPED), keys.filter(bool)), min_size=1, max_size=6)


@st.composite
def updates(draw: st.DrawFn, deleted: bool) -> Pairs:
    """The updates object: a few mapped and odd names, or thousands of generated ones; bodies with edge
    values, `previous` or not, unknown fields inside."""
    if _one_in(draw, 10):
        n = draw(st.sampled_from((3, 500, 1000, 2000, 3000, 4100)))
        stem = draw(st.sampled_from(("a", "attr.", "*", "{x}", "\u202e", "segment",)))
        body = '{"current":%s,"confidence":1}' % to_json(None if deleted else draw(short_scalars))
        return Raw("{" + ",".join(json.dumps(f"{stem}{i}") + ":" + body for i in range(n)) + "}")
    names = draw(_attribute_names)
    pairs = []
    for name in names:
        body: list[tuple[str, Any]] = [("current", None if deleted else draw(scalars)),
                                       ("confidence", draw(confidences))]
        if draw(st.booleans()):
            body.append(("previous", draw(scalars)))
        if _one_in(draw, 5):
            body.append((draw(keys), draw(nested())))
        pairs.append((name, Pairs(draw(st.permutations(body)))))
    return Pairs(pairs)


@st.composite
def events(draw: st.DrawFn, users: list[str] | None = None, ids: list[str] | None = None) -> Pairs:
    """A structurally valid event (every required field present, of the right JSON type) whose values
    are drawn at the edges; some edges are over the line on purpose (the validator must refuse them)."""
    user = draw(st.sampled_from(users)) if users and not _one_in(draw, 4) else draw(nonempty_texts)
    event_id = draw(st.sampled_from(ids)) if ids and _one_in(draw, 10) else draw(event_ids)
    deleted = _one_in(draw, 6)
    delta: list[tuple[str, Any]] = [("userId", user), ("updates", draw(updates(deleted)))]
    if draw(st.booleans()):
        delta.append(("sessionId", draw(texts)))
    if _one_in(draw, 4):
        delta.append(("expectedVersion", draw(expected_versions)))
    if _one_in(draw, 6):
        delta.append((draw(keys), draw(nested())))
    source: list[tuple[str, Any]] = [("modelId", draw(nonempty_texts)), ("instanceId", draw(nonempty_texts))]
    if _one_in(draw, 6):
        source.append((draw(keys), draw(nested())))
    doc: list[tuple[str, Any]] = [
        ("eventId", event_id), ("timestamp", draw(any_timestamp)),
        ("eventType", "context.deleted" if deleted else "context.updated"),
        ("source", Pairs(source)), ("contextDelta", Pairs(delta)),
    ]
    if draw(st.booleans()):
        rules: list[tuple[str, Any]] = []
        if draw(st.booleans()):
            n = draw(st.sampled_from((0, 1, 2, 3, 50, 1000,)))
            rules.append(("targetModels", [draw(nonempty_texts) for _ in range(min(n, 3))] + [f"m{i}" for i in range(n - 3)]))
        if draw(st.booleans()):
            rules.append(("priority", draw(st.sampled_from(("low", "normal", "high", "critical",)))))
        if draw(st.booleans()):
            rules.append(("ttl", draw(ttls)))
        if _one_in(draw, 5):
            rules.append((draw(keys), draw(nested())))
        doc.append(("propagationRules", Pairs(rules)))
    for _ in range(draw(st.integers(0, 2))):
        doc.append((draw(keys), draw(nested())))
    return Pairs(draw(st.permutations(doc)))


# ---- bytes ----

INVALID_UTF8 = (b"\xff", b"\xfe", b"\x80", b"\xc0\x80", b"\xc3", b"\xed\xa0\x80", b"\xed\xbf\xbf",
                b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80")
MUTATIONS = ("duplicate_key", "flip", "invalid_utf8", "truncate", "bom", "wrap", "trailing", "bad_number",
             "raw_control", "lone_surrogate", "delete_span", "swap_quote")


@st.composite
def mutated(draw: st.DrawFn, line: bytes) -> bytes:
    """`line` with one or two mutations: what a broken producer, a bad proxy or an attacker sends."""
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(MUTATIONS))
        at = draw(st.integers(0, len(line)))
        if kind == "truncate":
            line = line[:max(at, 1)]
        elif kind == "flip" and line:
            at = min(at, len(line) - 1)
            line = line[:at] + bytes([line[at] ^ draw(st.integers(1, 255))]) + line[at + 1:]
        elif kind == "invalid_utf8":
            line = line[:at] + draw(st.sampled_from(INVALID_UTF8)) + line[at:]
        elif kind == "duplicate_key":  # the same key twice: the parser keeps one, the raw keeps both
            name = draw(st.sampled_from((b"eventId", b"contextDelta", b"timestamp", b"userId", b"updates",)))
            value = draw(st.sampled_from((b'"dup"', b"null", b"{}", b"1e300", b'{"userId":"x"}',)))
            brace = line.find(b"{")
            if brace >= 0:
                line = line[:brace + 1] + b'"' + name + b'":' + value + b"," + line[brace + 1:]
        elif kind == "bom":
            line = b"\xef\xbb\xbf" + line
        elif kind == "wrap":
            line = draw(st.sampled_from([b"[", b'{"a":', b'"'])) + line + draw(st.sampled_from([b"]", b"}", b'"']))
        elif kind == "trailing":
            line = line + draw(st.sampled_from((b" x", b"{}", b",", b"\x00", b" \t ", b"//c",)))
        elif kind == "bad_number":
            token = draw(st.sampled_from((b"NaN", b"Infinity", b"-Infinity", b"1e400", b"01", b"1.", b".5",
                                          b"+1", b"0x10", b"1_000",)))
            line = line.replace(b'"confidence":', b'"confidence":' + token + b",\"_\":", 1)
        elif kind == "raw_control":
            line = line[:at] + draw(st.sampled_from((b"\x00", b"\x01", b"\x1b", b"\x7f", b"\x0b", b"\x0c",))) + line[at:]
        elif kind == "lone_surrogate":
            line = line.replace(b'"userId":"', b'"userId":"' + draw(st.sampled_from(
                [b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\udc00\\ud800"])), 1)
        elif kind == "delete_span":
            end = draw(st.integers(at, min(len(line), at + 40)))
            line = line[:at] + line[end:]
        elif kind == "swap_quote":
            line = line.replace(b'"', b"'", draw(st.integers(1, 3)))
    return line


@st.composite
def event_lines(draw: st.DrawFn, users: list[str] | None = None, ids: list[str] | None = None) -> bytes:
    """One payload: the JSON text of a hostile event (raw UTF-8 or all-ASCII escapes, compact or spaced),
    mutated now and then."""
    doc = draw(events(users, ids))
    line = to_json(doc, ascii_only=draw(st.booleans()), spaced=_one_in(draw, 6)).encode("utf-8",
                                                                                                     "surrogatepass")
    if _one_in(draw, 6):
        line = draw(mutated(line))
    return line


@st.composite
def record_streams(draw: st.DrawFn, max_records: int = 12) -> list[bytes]:
    """A stream of payloads (Kafka records: any bytes, newlines included) over a few users, with
    redeliveries of earlier payloads and reused eventIds, so aggregates grow, conflict and deduplicate."""
    users = draw(st.lists(st.one_of(st.sampled_from(("u1", "u2",)), nonempty_texts), min_size=1, max_size=3))
    ids = ["e1", "e2", "e1\x00", "\U0001f600"]
    out: list[bytes] = []
    for _ in range(draw(st.integers(1, max_records))):
        if out and _one_in(draw, 10):
            out.append(draw(st.sampled_from(out)))  # a producer's retry: the same bytes again
        else:
            out.append(draw(event_lines(users, ids)))
    return out


def as_file_lines(records: list[bytes]) -> list[bytes]:
    """The records as lines of a JSON Lines file: a record's CR/LF bytes would split it, so they become
    spaces (what a producer writing a file would do); blank records are kept (the reader skips them)."""
    return [r.replace(b"\r", b" ").replace(b"\n", b" ") for r in records]


# ---- the hand-made cases: every bug the harness found, plus the one that started issue 22 ----

def _base(**delta: Any) -> dict[str, Any]:
    return {"eventId": "hand-1", "timestamp": "2026-11-17T10:00:00.000Z", "eventType": "context.updated",
            "source": {"modelId": "m", "instanceId": "i"},
            "contextDelta": {"userId": "u1", "updates": {"segment": {"current": "a", "confidence": 1}}, **delta}}


def hand_cases() -> dict[str, bytes]:
    """Named hostile payloads, kept in the suite and in the fixed corpus."""
    cases: dict[str, bytes] = {
        "expected_version_2_64": to_json(_base(expectedVersion=Num("18446744073709551616"))).encode(),
        "expected_version_1e300": to_json(_base(expectedVersion=Num("1e300"))).encode(),
        "ttl_1e300": to_json({**_base(), "propagationRules": {"ttl": Num("1e300")}}).encode(),
        # found by the search: an unknown field nested 255+ deep was accepted, then orjson could not
        # write its history record ("Recursion limit reached"): the job stopped
        "unknown_field_nested_300_deep": to_json({**_base(), "x": Deep((300, None, 1))}).encode(),
        "unknown_field_nested_1024_deep": to_json({**_base(), "x": Deep((1023, "k", None))}).encode(),
        # found by the search: an integer written as a float (1E2, 3600.0) was accepted but kept as a
        # float, which Avro's long (the binary form of the event) cannot hold
        "expected_version_1E2": to_json(_base(expectedVersion=Num("1E2"))).encode(),
        # found by the search: year 0000 at a positive offset is year -1 in UTC; its output timestamp
        # `-001-12-31T23:00:00.000Z` reads back nowhere
        "timestamp_year_minus_1_utc": to_json({**_base(), "timestamp": "0000-01-01T00:00:00+01:00"}).encode(),
        # found by the search: a value of 2^63..2^64-1 was accepted; the Avro form of the event (a long or
        # a double) wrote 18446744073709551615 as 1.8446744073709552e19
        "current_2_64_minus_1": to_json(_base(updates={"segment": {"current": 2**64 - 1, "confidence": 1}})).encode(),
        "previous_2_63": to_json(_base(updates={"segment": {"current": 1, "confidence": 1, "previous": 2**63}})).encode(),
        # found by the search: the detail named a 3,000-character attribute in full
        "long_attribute_name_detail": to_json(_base(updates={"x" * 3000: {"current": [1], "confidence": 1}})).encode(),
        "ttl_3600.0": to_json({**_base(), "propagationRules": {"ttl": Num("3600.0")}}).encode(),
    }
    return cases


def corpus(lines: int = 400, big: int = 8, big_bytes: int = 50_000) -> list[bytes]:
    """A fixed corpus of JSON Lines (no CR/LF inside a line): `lines` payloads drawn by the strategies
    with a fixed seed (derandomized: the same list on every run of one hypothesis version), then the
    named cases. Streams are drawn whole so users, eventIds and redeliveries recur. At most `big` lines
    exceed `big_bytes`: engine runs of the suite stay a few megabytes."""
    import warnings

    from hypothesis import HealthCheck, Phase, given, settings

    drawn: list[bytes] = []
    bigs = [0]

    @settings(derandomize=True, database=None, deadline=None, max_examples=10**6, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(record_streams(max_records=20))
    def collect(records: list[bytes]) -> None:
        for line in as_file_lines(records):
            if len(drawn) == lines:
                raise _Enough
            if len(line) > big_bytes:
                if bigs[0] == big:
                    continue
                bigs[0] += 1
            drawn.append(line)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hypothesis' "overly large repr" of the stopping example
        try:
            collect()
        except _Enough:
            pass
    return drawn + list(hand_cases().values())


class _Enough(Exception):
    """Stops the corpus collection (hypothesis has no 'stop now' of its own)."""
