"""`ctxsync drift-report`: a self-contained page that really renders (headless Chromium screenshot)."""
from __future__ import annotations

import re
import subprocess

from ctxsync.cli import main
from tests.fixtures_drift import DRIFT_AT, drift_streams, drifted_run  # noqa: F401 (fixtures)
from tests.png_colors import distinct_colours, pixels

CHROMIUM = "/usr/bin/chromium"


def screenshot(page, png, profile) -> None:
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,900", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )


def test_report_is_self_contained_and_marks_the_planted_alert(drifted_run, tmp_path, capsys):
    page = tmp_path / "drift.html"
    assert main(["drift-report", str(drifted_run / "drift.jsonl"), "--html", str(page)]) == 0
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing to fetch: works offline
    assert "<script" not in text and text.count("<svg") >= 2 * 12  # two charts per attribute
    assert f"ALERT {DRIFT_AT}: psi, js" in text  # the segment window where the drift starts
    assert "with alerts" in capsys.readouterr().out


def test_report_renders_in_headless_chromium(drifted_run, tmp_path):
    page, png = tmp_path / "drift.html", tmp_path / "drift.png"
    assert main(["drift-report", str(drifted_run / "drift.jsonl"), "--html", str(page)]) == 0
    screenshot(page, png, tmp_path / "chromium-profile")
    image = pixels(png)
    assert image.shape[:2] == (900, 1200)
    assert distinct_colours(png) > 500  # charts, stacked bars, text: not a blank or error page


def test_report_rejects_files_that_are_not_drift_records(tmp_path, capsys):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"a": 1}\n')
    assert main(["drift-report", str(bad), "--html", str(tmp_path / "x.html")]) == 2
    assert "no 'scores'" in capsys.readouterr().err
