"""Helpers of the web console's browser tests (``test_web_console.py``): the console served for
the test stack, a Playwright page that records every request it makes and fails on any script
error, axe-core in every page, and screenshots when ``AIJOBS_SCREENSHOTS`` is set."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from conftest import ROOT, launch_chromium

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
# What axe-core calls "serious" or "critical": the bar. Minor and moderate are reported
# by the same run but do not fail it.
BLOCKING = {"serious", "critical"}


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Tab:
    """One browser page on the console, with what it asked for and what went wrong in it."""

    page: Any
    console_url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, route: str = "/") -> None:
        self.page.goto(f"{self.console_url}/#{route}")

    def go(self, route: str) -> None:
        """Move inside the console as a link would (no reload)."""
        self.page.evaluate("route => { location.hash = '#' + route; }", route)

    def hosts(self) -> set[str]:
        return {origin(url) for url in self.requests if not url.startswith(("blob:", "data:"))}

    def axe(self, name: str) -> None:
        """axe-core over the page as it is now: no serious or critical violation."""
        violations = self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        )
        blocking = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
            for v in violations
            if v["impact"] in BLOCKING
        ]
        assert not blocking, f"axe-core on the {name} page:\n" + "\n".join(blocking)

    def member_row(self, username: str) -> Any:
        """A row of a team page's roster (``#members``), by the member's username."""
        return self.page.locator(f'#members tbody tr[data-username="{username}"]')

    def shot(self, name: str) -> None:
        """A screenshot for the README, only when asked (a normal run leaves the tree clean)."""
        if not os.environ.get("AIJOBS_SCREENSHOTS"):
            return
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def browser_session() -> Iterator[Any]:
    """One headless Chromium for the whole module (starting one costs about a second)."""
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait up to 15 s (Playwright's default is 5 s): scripts/test runs on 2 busy cores.
    expect.set_options(timeout=15_000)
    assert AXE.exists(), f"{AXE} is missing: run scripts/_setup (npm ci installs axe-core)"
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()


def new_tab(browser: Any, console_url: str) -> Tab:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console_url)
    # An init script runs before the page's own and is not subject to its Content-Security-Policy,
    # so axe is there on every page without loosening the policy the console is served with.
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.set_default_timeout(15_000)
    tab = Tab(page, console_url)
    context.on("request", lambda request: tab.requests.append(request.url))
    page.on("pageerror", lambda error: tab.errors.append(f"uncaught: {error}"))
    # CSP violations and failed module loads are reported as console errors.
    page.on("console", lambda message: _console_error(tab, message))
    return tab


def _console_error(tab: Tab, message: Any) -> None:
    # Chromium logs every 4xx answer as an error; those are the API's refusals, which the pages
    # show in words (the tests check that). Anything else (a CSP violation, a failed module) counts.
    if message.type == "error" and "the server responded with a status of 4" not in message.text:
        tab.errors.append(f"console: {message.text}")


def png(width: int = 320, height: int = 200) -> bytes:
    """A small gradient PNG: what the fake image model draws, so the screenshot shows a picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes((40 + x * 200 // width, 90 + y * 120 // height, 200 - x * 120 // width))
            for x in range(width)
        )
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


__all__ = ["AXE", "SCREENSHOTS", "Tab", "browser_session", "new_tab", "origin", "png"]
