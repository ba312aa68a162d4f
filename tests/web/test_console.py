"""The console end to end, in chromium against a real server: sign in per role, enroll two
people from the smoke set, search a photo with a purpose, see the entry in the audit
ledger, scan the Hamilton clip and confirm its match on a two-person list with two
different reviewers, erase a subject. Every page is screenshotted and checked with
axe-core (no serious or critical violations)."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import SMOKE
from tests.web.artifacts import ARTIFACTS, AXE, PHONE
from tests.web.browsing import Person, sign_in
from tests.web.conftest import Console

IDENTITIES = SMOKE / "identities"
LIN = "Lin-Manuel Miranda"
OBAMA = "Barack Obama"
NAV = ("Review queue", "Search", "Subjects", "Audit", "Administration", "Status")
ALLOWED = {
    "admin-1": {"Administration", "Status"},
    "enroller-1": {"Subjects", "Status"},
    "operator-1": {"Review queue", "Search", "Status"},
    "reviewer-1": {"Review queue", "Status"},
    "auditor-1": {"Audit", "Status"},
}
"""What each role's menu shows: the API's role table (faceledger.access), written out."""


@pytest.fixture(scope="module", autouse=True)
def _axe() -> None:
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed at {AXE} (npm ci --prefix tests/web; .ci/run does)")


def api(console: Console, name: str) -> httpx.Client:
    return httpx.Client(
        base_url=console.url, headers={"X-API-Key": console.tokens[name]}, timeout=30
    )


def test_each_role_sees_only_its_pages_and_the_key_never_reaches_the_page(
    browser: Browser, console: Console
) -> None:
    for name, allowed in ALLOWED.items():
        person = sign_in(browser, console, name)
        page = person.page
        menu = page.get_by_role("navigation", name="Main")
        for link in NAV:
            expect(menu.get_by_role("link", name=link, exact=True)).to_have_count(
                1 if link in allowed else 0
            )
        # the key is in no URL, no storage the page can read, no readable cookie
        token = console.tokens[name]
        assert token not in page.url
        stored = page.evaluate(
            "() => JSON.stringify([document.cookie, {...localStorage}, {...sessionStorage}])"
        )
        assert token not in stored and "faceledger_session" not in stored
        assert token not in page.content()
        page.context.close()
    # a page the role lacks: the API refuses, and the page says so in words
    auditor = sign_in(browser, console, "auditor-1")
    auditor.page.goto(f"{console.url}/#/subjects")
    expect(auditor.page.get_by_role("alert")).to_contain_text("Your key (role auditor) may not")
    auditor.assert_accessible("forbidden")
    # signing out ends the session: the next page asks for a key again
    auditor.page.get_by_role("button", name="Sign out").click()
    expect(auditor.page.get_by_role("heading", name="Sign in")).to_be_visible()
    auditor.page.goto(f"{console.url}/#/audit")
    expect(auditor.page.get_by_role("heading", name="Sign in")).to_be_visible()
    auditor.page.context.close()


PAGES = {
    "Review queue": ("review", "Review queue"),
    "Search": ("search", "Search a photo"),
    "Subjects": ("subjects", "Subjects"),
    "Audit": ("audit", "Audit ledger"),
    "Administration": ("admin", "Administration"),
    "Status": ("status", "Status"),
}


def test_every_page_holds_to_the_role_table(browser: Browser, console: Console) -> None:
    """Each role opening each page by its address: what the role may use works, the rest is
    refused by the API and says so (the page never shows data the key may not read)."""
    for name, allowed in ALLOWED.items():
        person = sign_in(browser, console, name)
        role = name.split("-")[0]
        for link, (route, heading) in PAGES.items():
            page = person.go(route, heading)
            refusal = page.get_by_role("alert").filter(has_text=f"Your key (role {role}) may not")
            if link in allowed:
                expect(refusal).to_have_count(0)
            elif link != "Search":  # a search page refuses when a search is submitted
                expect(refusal.first).to_be_visible()
        person.page.context.close()


def test_a_wrong_key_is_refused_in_words(browser: Browser, console: Console) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{console.url}/")
    page.get_by_label("API key").fill("fl_deadbeef_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked API key")
    person = Person(console, page, "nobody")
    person.assert_accessible("sign-in", docs=True)
    context.close()


def enroll(person: Person, name: str, files: list[str], lists: tuple[str, ...] = ()) -> None:
    page = person.go("subjects", "Subjects")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Legal basis").fill("public figure; smoke-test photos")
    for wanted in lists:
        page.get_by_label(re.compile(f"^{wanted}")).check()
    page.get_by_role("button", name="Create subject").click()
    expect(page.locator("h1")).to_have_text(name)
    page.get_by_label(re.compile("^Photos to enroll")).set_input_files(files)
    expect(page.get_by_role("status").filter(has_text=re.compile(r"\d+ enrolled"))).to_be_visible(
        timeout=60_000
    )


def test_signing_in_and_the_queue_work_from_the_keyboard_alone(
    browser: Browser, console: Console
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{console.url}/")
    key = page.get_by_label("API key")
    for _ in range(6):  # the skip link first, then the form
        if key.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    assert key.evaluate("el => el === document.activeElement"), "Tab never reached the key"
    page.keyboard.type(console.tokens["reviewer-1"])
    page.keyboard.press("Enter")
    expect(page.get_by_text("Signed in as reviewer-1")).to_be_visible()
    expect(page.locator("h1")).to_have_text("Review queue")
    page.keyboard.press("?")
    expect(page.get_by_role("heading", name="Keyboard shortcuts")).to_be_visible()
    focused = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    page.keyboard.press("Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", f"no visible focus (was {focused})"
    context.close()


def test_enroll_two_people_with_feedback_per_photo(browser: Browser, console: Console) -> None:
    enroller = sign_in(browser, console, "enroller-1")
    lin = str(IDENTITIES / "fr_lin_manuel_miranda" / "face_recognition_lin-manuel-miranda.png")
    group = str(SMOKE / "scenes" / "two_people.jpg")
    enroll(enroller, LIN, [lin, group], ("wanted",))
    page = enroller.page
    results = page.get_by_test_id("enroll-result")
    expect(results).to_have_count(2)
    expect(results.nth(0)).to_contain_text(re.compile(r"enrolled \(quality (0\.\d\d|1\.00)\)"))
    expect(results.nth(1)).to_contain_text("rejected")
    expect(results.nth(1)).to_contain_text("faces")  # it holds two: whose would it be?
    expect(page.get_by_role("img", name=re.compile(f"^Template \\d+ of {LIN}"))).to_have_count(1)
    enroller.assert_accessible("subject", docs=True)
    obama = sorted(str(p) for p in (IDENTITIES / "fr_obama").glob("face_recognition_obama*.jpg"))
    enroll(enroller, OBAMA, obama[:2])
    expect(page.get_by_test_id("enroll-result")).to_have_count(2)
    page = enroller.go("subjects", "Subjects")
    expect(page.get_by_role("link", name=LIN)).to_be_visible()
    expect(page.get_by_role("link", name=OBAMA)).to_be_visible()
    page.get_by_label("Filter subjects").fill("obama")
    expect(page.get_by_role("link", name=LIN)).to_have_count(0)
    page.get_by_label("Filter subjects").fill("")
    enroller.assert_accessible("subjects", docs=True)
    with api(console, "enroller-1") as client:
        assert client.get(f"/v1/subjects/{OBAMA}").json()["templates"] == 2
    enroller.page.context.close()


def test_search_needs_a_purpose_and_names_no_one_for_an_unknown_face(
    browser: Browser, console: Console
) -> None:
    operator = sign_in(browser, console, "operator-1")
    page = operator.go("search", "Search a photo")
    probe = sorted((IDENTITIES / "fr_obama").glob("face_recognition_obama*.jpg"))[-1]
    page.get_by_label(re.compile("^Photo")).set_input_files(str(probe))
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("State why this search is made")
    page.get_by_label(re.compile("^Purpose")).fill("badge check at the front desk")
    page.get_by_label(re.compile("^Case reference")).fill("DESK-7")
    page.get_by_role("button", name="Search").click()
    faces = page.get_by_test_id("face-result")
    expect(faces).to_have_count(1, timeout=30_000)
    expect(faces.first).to_contain_text(OBAMA)
    expect(page.get_by_role("status").filter(has_text="ledger entry")).to_be_visible()
    operator.assert_accessible("search-match", docs=True)
    # strangers: unknown, and never the nearest enrolled person
    page.get_by_label(re.compile("^Photo")).set_input_files(str(SMOKE / "scenes" / "couple.jpg"))
    page.get_by_role("button", name="Search").click()
    expect(faces.first).to_contain_text("unknown", timeout=30_000)
    for text in faces.all_inner_texts():
        assert LIN not in text and OBAMA not in text, text
    operator.assert_accessible("search-unknown")
    operator.page.context.close()


def test_the_search_is_on_the_audit_ledger_which_verifies(
    browser: Browser, console: Console
) -> None:
    auditor = sign_in(browser, console, "auditor-1")
    page = auditor.go("audit", "Audit ledger")
    with api(console, "auditor-1") as client:
        head = client.get("/v1/audit/verify").json()["head"]
        entries = client.get("/v1/audit").json()
    expect(page.get_by_test_id("chain-status")).to_contain_text("Chain verified")
    expect(page.get_by_test_id("chain-status")).to_contain_text(head)
    row = page.get_by_role("row").filter(has_text="badge check at the front desk")
    expect(row.first).to_contain_text("identify")
    expect(row.first).to_contain_text("operator-1")
    expect(row.first).to_contain_text("DESK-7")
    page.get_by_label("Actor").fill("enroller-1")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("row").filter(has_text="badge check")).to_have_count(0)
    auditor.assert_accessible("audit", docs=True)
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("^Export")).click()
    lines = download.value.path().read_text().splitlines()
    assert len(lines) >= len(entries) and json.loads(lines[-1])["hash"]
    auditor.page.context.close()


def test_a_scanned_match_reaches_the_open_queue_and_needs_two_reviewers(
    browser: Browser, console: Console
) -> None:
    first = sign_in(browser, console, "reviewer-1")
    page = first.go("review", "Review queue")
    expect(page.get_by_role("status").filter(has_text="Nothing waits")).to_be_visible()
    started = time.monotonic()
    scan = console.run_cli(
        "scan", str(SMOKE / "video" / "short_hamilton_clip.mp4"), "--purpose", "stage door test"
    )
    assert scan.returncode == 0, scan.stderr
    items = page.locator("#queue li[data-event-id]")
    expect(items.first).to_contain_text(LIN, timeout=10_000)  # live: no reload
    print(f"scan to queue: {time.monotonic() - started:.1f} s (scan included)")
    first.assert_accessible("review-queue", docs=True)
    event_id = items.first.get_attribute("data-event-id")
    items.first.get_by_role("link").click()
    expect(page.locator("h1")).to_have_text(f"Event {event_id}")
    evidence = page.get_by_role("img", name=f"Evidence crop of event {event_id}")
    template = page.get_by_role("img", name=re.compile(f"^Enrolled template \\d+ of {LIN}"))
    for image in (evidence, template):
        expect(image).to_be_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    facts = page.locator("main dl").first
    expect(facts).to_contain_text("stage door test")  # the scan's purpose, from its entry
    state = page.get_by_test_id("review-state")
    expect(state).to_contain_text("Needs 2 different reviewers")
    page.get_by_label("Go to the next pending event after a decision").uncheck()
    page.get_by_label("Comment (optional)").fill("same face as the enrolled photo")
    page.get_by_role("button", name="Confirm").click()
    expect(state).to_contain_text("1 of 2")
    expect(page.get_by_role("button", name="Confirm")).to_be_disabled()
    first.assert_accessible("event", docs=True)
    second = sign_in(browser, console, "reviewer-2")
    second.go(f"events/{event_id}", f"Event {event_id}")
    expect(second.page.get_by_role("button", name="Confirm")).to_be_enabled()
    second.page.keyboard.press("c")  # the keyboard shortcut for Confirm
    # it moves on to the next pending event (or the queue) and says what became of this one
    announced = second.page.get_by_role("status").filter(has_text=f"Event {event_id}:")
    expect(announced).to_contain_text("now confirmed (2 of 2 confirmations)")
    second.go(f"events/{event_id}", f"Event {event_id}")
    expect(second.page.get_by_test_id("review-state")).to_contain_text(
        "Confirmed by reviewer-1, reviewer-2"
    )
    with api(console, "reviewer-1") as client:
        event = client.get(f"/v1/events/{event_id}").json()
    assert event["review"] == "confirmed"
    assert [r["reviewer"] for r in event["reviews"]] == ["reviewer-1", "reviewer-2"]
    # the first reviewer's open queue drops it as it is decided
    page = first.go("review", "Review queue")
    expect(page.locator(f'#queue li[data-event-id="{event_id}"]')).to_have_count(0)
    for person in (first, second):
        person.page.context.close()


def test_erasure_says_what_it_deletes_and_the_subject_is_gone(
    browser: Browser, console: Console
) -> None:
    enroller = sign_in(browser, console, "enroller-1")
    page = enroller.go("subjects", "Subjects")
    page.get_by_role("link", name=LIN).click()
    page.get_by_role("button", name=re.compile(f"^Erase {LIN}")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(re.compile(r"deletes .+'s 1 template \("))
    expect(dialog).to_contain_text("evidence crops")
    enroller.assert_accessible("erase-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    with api(console, "enroller-1") as client:
        assert client.get(f"/v1/subjects/{LIN}").status_code == 200
    page.get_by_role("button", name=re.compile(f"^Erase {LIN}")).click()
    page.get_by_role("dialog").get_by_role("button", name="Erase permanently").click()
    expect(page.get_by_role("status").filter(has_text=f"{LIN} erased")).to_be_visible()
    expect(page.get_by_role("link", name=LIN)).to_have_count(0)
    with api(console, "enroller-1") as client:
        assert client.get(f"/v1/subjects/{LIN}").status_code == 404
    enroller.page.context.close()


def test_administration_keys_watch_lists_and_retention(browser: Browser, console: Console) -> None:
    admin = sign_in(browser, console, "admin-1")
    page = admin.go("admin", "Administration")
    # a new key, shown once, that works at once, and ends its holder's session when revoked
    page.get_by_label("Holder's name").fill("reviewer-3")
    page.get_by_label("Role").select_option("reviewer")
    page.get_by_role("button", name="Create key").click()
    token = page.get_by_test_id("new-token").inner_text()
    assert token.startswith("fl_")
    console.tokens["reviewer-3"] = token
    third = sign_in(browser, console, "reviewer-3")
    third.go("review", "Review queue")
    row = page.get_by_role("row").filter(has_text="reviewer-3")
    row.get_by_role("button", name="Revoke the key of reviewer-3 (reviewer)").click()
    row.get_by_role("button", name="Revoke now").click()
    expect(page.get_by_role("status").filter(has_text="is revoked")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="reviewer-3")).to_contain_text("revoked")
    third.page.reload()
    expect(third.page.get_by_role("heading", name="Sign in")).to_be_visible()
    third.page.context.close()
    # a two-person watch list
    page.get_by_label("Name", exact=True).fill("vip-door")
    page.get_by_label("Two different reviewers must confirm (two-person rule)").check()
    page.get_by_role("button", name="Create watch list").click()
    expect(page.get_by_role("status").filter(has_text="vip-door created")).to_contain_text(
        "two different reviewers confirm"
    )
    with api(console, "admin-1") as client:
        made = {w["name"]: w for w in client.get("/v1/watchlists").json()}
    assert made["vip-door"]["two_person"] and made["vip-door"]["reviews_needed"] == 2
    # retention, behind a confirmation, on the record
    page.get_by_role("button", name="Run retention now…").click()
    page.get_by_role("button", name="Delete what outlived them").click()
    ran = page.get_by_role("status").filter(has_text="Retention run")
    expect(ran).to_contain_text("ledger entry")
    admin.assert_accessible("admin", docs=True)
    admin.page.context.close()


def test_status_page(browser: Browser, console: Console) -> None:
    admin = sign_in(browser, console, "admin-1")
    page = admin.go("status", "Status")
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    expect(page.locator("main")).to_contain_text("edgeface")
    admin.assert_accessible("status", docs=True)
    admin.page.context.close()


@pytest.mark.parametrize(
    ("name", "route", "heading"),
    [
        ("reviewer-1", "review", "Review queue"),
        ("operator-1", "search", "Search a photo"),
        ("enroller-1", "subjects", "Subjects"),
        ("auditor-1", "audit", "Audit ledger"),
    ],
)
def test_pages_fit_a_phone(
    browser: Browser, console: Console, name: str, route: str, heading: str
) -> None:
    person = sign_in(browser, console, name, viewport=PHONE)
    page = person.go(route, heading)
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= PHONE["width"] + 1, f"{route} is {wide} px wide on a {PHONE['width']} px phone"
    person.assert_accessible(f"phone-{route}")
    person.page.context.close()


def test_api_docs_work_with_no_network(browser: Browser, console: Console) -> None:
    context = browser.new_context()
    outside: list[str] = []

    def only_here(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if url.startswith(console.url):
            route.continue_()  # type: ignore[attr-defined]
        else:
            outside.append(url)
            route.abort()  # type: ignore[attr-defined]

    context.route("**/*", only_here)
    page = context.new_page()
    page.goto(f"{console.url}/docs")
    expect(page.get_by_text("/v1/identify").first).to_be_visible(timeout=20_000)
    assert not outside, f"the docs page asked for {outside}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
    page.goto(f"{console.url}/")  # the console too asks nothing of anywhere else
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert not outside, f"the console asked for {outside}"
    context.close()
