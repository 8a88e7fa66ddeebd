"""Debian's Chromium under Playwright: Playwright's own browser download is not reachable here."""

from __future__ import annotations

import shutil
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    return CHROMIUM if shutil.which(CHROMIUM) else shutil.which("chromium")


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser from the system's package."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("Chromium is not installed: apt-get install -y chromium")
    return playwright.chromium.launch(executable_path=path, args=list(ARGS), headless=True)
