"""Driving the console as a person would: sign in with a key, go to a page, and check
each page seen (accessibility with axe-core, a screenshot, no script errors)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.web.artifacts import ARTIFACTS, AXE, DESKTOP, FOUND, SERIOUS
from tests.web.conftest import Console

AXE_RUN = """async () => {
  const found = await axe.run(document, {resultTypes: ['violations']});
  return found.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
}"""
BLUR_FACES = """() => { for (const img of document.querySelectorAll('img'))
  img.style.filter = 'blur(24px)'; }"""
"""For screenshots kept in docs/: every image is blurred (faces are never committed)."""


@dataclass
class Person:
    """A browser session of one key's holder."""

    console: Console
    page: Page
    name: str
    errors: list[str] = field(default_factory=list)

    def console_message(self, message: Any) -> None:
        # a refused request (a 403 the page then explains) is logged by the browser too
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def go(self, route: str, heading: str | re.Pattern[str]) -> Page:
        """Open ``#/route`` and wait for its h1."""
        self.page.goto(f"{self.console.url}/#/{route}")
        expect(self.page.locator("h1")).to_have_text(heading)
        return self.page

    def check(self, label: str, *, docs: bool = False) -> list[dict[str, Any]]:
        """Run axe-core on the page as it is now and save a screenshot as ``label``;
        returns the serious and critical violations (recorded for the report).
        ``docs``: also save a copy with every image blurred, for docs/."""
        page = self.page
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{label}.png"), full_page=True)
        if docs:
            (ARTIFACTS / "docs").mkdir(exist_ok=True)
            page.evaluate(BLUR_FACES)
            page.screenshot(path=str(ARTIFACTS / "docs" / f"{label}.png"), full_page=True)
        if not AXE.exists():  # the skip is stated by need_axe(); screenshots still taken
            return []
        if not page.evaluate("() => typeof axe !== 'undefined'"):
            # evaluated through the DevTools protocol: the page's own policy, which allows no
            # injected script tag, stays as it is
            page.evaluate(AXE.read_text())
        violations: list[dict[str, Any]] = page.evaluate(AXE_RUN)
        serious = [v for v in violations if v["impact"] in SERIOUS]
        FOUND[label] = {
            "url": page.url,
            "serious_or_critical": serious,
            "other": [v for v in violations if v["impact"] not in SERIOUS],
        }
        return serious

    def assert_accessible(self, label: str, *, docs: bool = False) -> None:
        serious = self.check(label, docs=docs)
        assert not serious, f"{label}: {serious}"
        assert not self.errors, f"script errors on {label}: {self.errors}"


def sign_in(
    browser: Browser, console: Console, name: str, viewport: dict[str, int] | None = None
) -> Person:
    """A new browser context (its own cookies) signed in with ``name``'s key."""
    context = browser.new_context(viewport=viewport or DESKTOP, bypass_csp=False)
    page = context.new_page()
    person = Person(console, page, name)
    page.on("pageerror", lambda exc: person.errors.append(str(exc)))
    page.on("console", person.console_message)
    page.goto(f"{console.url}/#/signin")
    page.get_by_label("API key").fill(console.tokens[name])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    return person
