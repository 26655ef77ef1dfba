"""Distinct colours of a PNG screenshot without an imaging library (zlib + PNG row filters, numpy)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _unfilter_slow(kind: int, line: list[int], prev: list[int], bpp: int) -> list[int]:
    """Average (3) and Paeth (4) depend on the byte to the left: a plain loop over Python ints."""
    out = [0] * len(line)
    for x, value in enumerate(line):
        a = out[x - bpp] if x >= bpp else 0
        b = prev[x]
        if kind == 3:
            out[x] = (value + (a + b) // 2) & 0xFF
            continue
        c = prev[x - bpp] if x >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        out[x] = (value + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return out


def pixels(path: Path) -> np.ndarray:
    """RGB(A) pixels of an 8-bit truecolour PNG as an (h, w, channels) array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * bpp)
    image = np.zeros((height, width * bpp), dtype=np.int32)
    prev = np.zeros(width * bpp, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: running sum per channel
            row = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        elif kind == 2:
            row = (line + prev) & 0xFF
        else:
            row = np.array(_unfilter_slow(int(kind), line.tolist(), prev.tolist(), bpp), dtype=np.int32)
        image[y] = row
        prev = row
    return image.reshape(height, width, bpp).astype(np.uint8)


def distinct_colours(path: Path) -> int:
    rgb = pixels(path)[:, :, :3].reshape(-1, 3).astype(np.uint32)
    return len(np.unique((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]))
