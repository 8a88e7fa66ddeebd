"""`make screenshots`: every dashboard page at 1366×768 with the demo city, in docs/screenshots/.

Runs the demo (`run_demo(serve=...)` is not needed: it starts the stack itself), then drives
Debian's Chromium with Playwright. Usage: `python -m dxtalent.screenshots [URL]`; with a URL
of a running dashboard it only takes the pictures.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from dxtalent.browser import launch_chromium

PAGES = ("progress", "departments", "leaders", "employee", "categories", "cases", "intake")
OUT = Path("docs/screenshots")


def take(base_url: str, out: Path = OUT, employee_id: str = "") -> list[Path]:
    """One PNG per page of the dashboard at `base_url` (FY2025 at its last day)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        for key in PAGES:
            extra = f"&employee_id={employee_id}" if key == "employee" and employee_id else ""
            page.goto(f"{base_url}/dashboard/{key}?fiscal_year=2025&as_of=2026-03-31{extra}")
            path = out / f"{key}.png"
            page.screenshot(path=str(path))
            written.append(path)
        browser.close()
    return written


if __name__ == "__main__":
    for p in take(sys.argv[1], employee_id=sys.argv[2] if len(sys.argv) > 2 else ""):
        print(p)  # noqa: T201
