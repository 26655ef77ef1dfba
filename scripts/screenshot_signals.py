#!/usr/bin/env python3
"""Screenshot of the terminal view of `ctxsync signals` (docs/observability.md, Live status and tracing).

Runs `ctxsync signals --color always` against the profile's running job and connectors (or reads saved
ANSI output with --from), turns its ANSI colors into HTML on a terminal-like page and photographs that
page with headless chromium (Debian's, as scripts/install-system-deps.sh installs it).

    python scripts/screenshot_signals.py --profile local --out docs/img/signals.png
    ctxsync signals --color always > view.txt; python scripts/screenshot_signals.py --from view.txt
"""
from __future__ import annotations

import argparse
import html
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from chromium_screenshot import screenshot  # scripts/, this script's folder

ROOT = Path(__file__).resolve().parent.parent
SGR = re.compile(r"\x1b\[([0-9;]*)m")
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # cursor moves and clears: not part of the picture
STYLES = {"1": "font-weight:bold", "2": "opacity:0.6", "31": "color:#ff6b6b", "32": "color:#5fd787",
          "33": "color:#ffd75f"}
PAGE = """<!doctype html><meta charset="utf-8"><style>
body {{ margin: 0; background: #1e1e1e; }}
pre {{ margin: 0; padding: 18px 22px; color: #d4d4d4; font: 15px/1.45 "DejaVu Sans Mono", monospace; }}
</style><pre>{body}</pre>"""


def to_html(ansi: str) -> str:
    """The ANSI text as HTML spans (bold, dim and the three colors `ctxsync signals` uses)."""
    out, open_spans = [], 0
    for part in re.split(r"(\x1b\[[0-9;]*m)", CONTROL.sub(lambda m: m.group(0) if m.group(0).endswith("m") else "",
                                                          ansi)):
        match = SGR.fullmatch(part)
        if not match:
            out.append(html.escape(part))
            continue
        codes = [c for c in match.group(1).split(";") if c]
        if not codes or codes == ["0"]:
            out.append("</span>" * open_spans)
            open_spans = 0
            continue
        style = ";".join(STYLES[c] for c in codes if c in STYLES)
        out.append(f'<span style="{style}">')
        open_spans += 1
    out.append("</span>" * open_spans)
    return PAGE.format(body="".join(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="local")
    parser.add_argument("--from", dest="source", type=Path, help="saved ANSI output instead of a live run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "signals.png")
    args = parser.parse_args()
    if args.source:
        ansi = args.source.read_text()
    else:
        done = subprocess.run([sys.executable, "-m", "ctxsync.cli", "signals", "--color", "always", "--profile",
                               args.profile], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr.strip())
        ansi = done.stdout
    lines = CONTROL.sub("", SGR.sub("", ansi)).splitlines()
    size = (max(640, 9 * max(map(len, lines)) + 60), 22 * len(lines) + 50)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        page = Path(work) / "signals.html"
        page.write_text(to_html(ansi))
        screenshot(page.as_uri(), args.out, size, timeout_s=120)
    print(f"wrote {args.out} ({size[0]}x{size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
