"""`make screenshots`: every dashboard page at 1366×768 with the demo city, in docs/screenshots/.

Runs the demo city (`run_demo`), and while it is up drives Debian's Chromium with Playwright.
Usage: `python -m dxtalent.screenshots [URL]`; with the URL of a running reporting service
(e.g. `make demo DEMO_ARGS=--serve`) it only takes the pictures.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from rich.console import Console

from dxtalent.browser import launch_chromium
from dxtalent.demo import DEMO_SEED, DEMO_STAFF, run_demo

PAGES = ("progress", "departments", "leaders", "employee", "categories", "cases", "intake")
OUT = Path("docs/screenshots")


def take(base_url: str, out: Path = OUT, employee_id: str = "") -> list[Path]:
    """One PNG per page of the dashboard at `base_url` (FY2025 at its last day)."""
    from playwright.sync_api import sync_playwright  # a dev dependency, as is this command

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        for key in PAGES:
            extra = f"&employee_id={employee_id}" if key == "employee" and employee_id else ""
            # facts are received today: the intake page shows the current days
            when = "" if key == "intake" else "fiscal_year=2025&as_of=2026-03-31"
            page.goto(f"{base_url}/dashboard/{key}?{when}{extra}")
            path = out / f"{key}.png"
            page.screenshot(path=str(path))
            written.append(path)
        browser.close()
    return written


def a_leader_not_yet_at_level_1(base_url: str) -> str:
    """The first nominated leader the 推進リーダー page lists as not at level 1 (FY2025)."""
    url = f"{base_url}/dashboard/leaders/pending.csv?fiscal_year=2025&as_of=2026-03-31"
    with urllib.request.urlopen(url, timeout=30) as response:
        lines = response.read().decode("utf-8-sig").splitlines()
    return lines[1].split(",")[0] if len(lines) > 1 else ""


def shoot(console: Console, base_url: str) -> None:
    """Take every page's picture and say where they are."""
    for path in take(base_url, employee_id=a_leader_not_yet_at_level_1(base_url)):
        console.print(f"wrote {path}")


def main(argv: list[str]) -> None:
    console = Console()
    if argv:
        shoot(console, argv[0])
        return
    run_demo(
        console,
        staff=DEMO_STAFF,
        seed=DEMO_SEED,
        keep_data=False,
        then=lambda url: shoot(console, url),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
