"""One headless-Chromium screenshot, shared by the scripts that photograph ctxsync for the docs."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def screenshot(url: str, png: Path, size: tuple[int, int], wait_ms: int = 0, timeout_s: int = 180) -> None:
    """Load `url` in a fresh profile and save `png`; `wait_ms` of virtual time lets a page's scripts draw."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium is not installed (scripts/install-system-deps.sh installs it)")
    budget = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--hide-scrollbars", *budget, f"--user-data-dir={profile}", f"--screenshot={png}",
                        f"--window-size={size[0]},{size[1]}", url],
                       check=True, capture_output=True, timeout=timeout_s)
