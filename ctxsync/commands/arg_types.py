"""Argument types shared by several subcommands: a bad value is an argparse error (one line, exit 2)."""
from __future__ import annotations

import argparse

from transforms.timestamps import parse_iso_ms


def iso_time_ms(text: str) -> int:
    """An ISO-8601 time with a zone, as epoch milliseconds (the contract's timestamp rules)."""
    value = parse_iso_ms(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected ISO-8601 with a zone, e.g. 2026-11-24T08:00:00Z, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
