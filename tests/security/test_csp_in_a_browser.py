"""Every page and dialog runs under the strict Content-Security-Policy without a violation,
in Debian's Chromium via Playwright (pytest-django's live server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from adminpanel.models import AuditEntry, Session
from tests.audit.support import attempt
from tests.pages.support import Stream, ingest
from tests.pages.test_keys_and_theme_in_a_browser import ARGS, CHROMIUM, TIMEOUT_MS
from tests.support.streams import locked_sessions
from tests.support.users import make_user

# Collects what the browser reports: the event fires for every blocked script, style, etc.
LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI + " " + e.sourceFile);
});
"""


@pytest.fixture
def browser(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is required: apt-get install chromium"
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE")


class Watched:
    """A page whose console and ``securitypolicyviolation`` events are collected."""

    def __init__(self, context: BrowserContext, base: str) -> None:
        self.base = base
        self.console: list[str] = []
        context.add_init_script(LISTEN)
        self.page = context.new_page()
        self.page.on("console", lambda message: self.console.append(message.text))

    def visit(self, path: str) -> Page:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        self.page.wait_for_load_state("load")
        return self.page

    def violations(self) -> list[str]:
        found = [text for text in self.console if "Content Security Policy" in text]
        reported: list[str] = self.page.evaluate("window.__cspViolations || []")
        return found + reported


def context_as(browser: Browser, live_server: Any, user: User) -> BrowserContext:
    client = Client()
    client.force_login(user)
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    cookie = client.cookies["sessionid"]
    context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])
    return context


@pytest.fixture
def seeded(transactional_db: None) -> dict[str, int]:
    ingest(locked_sessions(Stream(), 3, leaked=1))
    session = Session.objects.filter(locked=True).order_by("pk").first()
    assert session is not None
    attempt(session_key=session.session_key, session_pk=session.pk)
    entry = AuditEntry.objects.order_by("seq").first()
    assert entry is not None
    return {"session": session.pk, "entry": entry.pk}


def test_every_page_loads_without_a_csp_violation(
    browser: Browser, live_server: Any, seeded: dict[str, int]
) -> None:
    admin = User.objects.create_superuser("root", password="pw")
    context = context_as(browser, live_server, admin)
    watched = Watched(context, live_server.url)
    paths = [
        "/",
        "/stuck/",
        f"/sessions/{seeded['session']}/",
        "/warnings/",
        "/gateways/",
        "/audit/",
        f"/audit/{seeded['entry']}/",
        "/admin/",
        "/admin/adminpanel/gateway/",
        "/admin/adminpanel/gateway/add/",
        "/admin/adminpanel/apitoken/",
    ]
    for path in paths:
        watched.visit(path)
        assert watched.violations() == [], path
    context.close()


def test_the_login_page_has_no_csp_violation(browser: Browser, live_server: Any) -> None:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    watched = Watched(context, live_server.url)
    watched.visit("/login/")
    assert watched.violations() == []
    context.close()


def test_the_action_and_keys_dialogs_open_without_a_csp_violation(
    browser: Browser, live_server: Any, seeded: dict[str, int]
) -> None:
    operator = make_user("op", "pw", role="operator")
    context = context_as(browser, live_server, operator)
    watched = Watched(context, live_server.url)
    page = watched.visit(f"/sessions/{seeded['session']}/")
    page.locator("a.act").first.click()
    page.locator("#action-dialog[open] form").wait_for()
    assert watched.violations() == []
    page.keyboard.press("Escape")
    page.locator("#action-dialog[open]").wait_for(state="detached")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    page.locator("dialog#keys-help[open]").wait_for()
    assert watched.violations() == []
    context.close()


def test_an_inline_script_would_be_reported(browser: Browser, live_server: Any) -> None:
    """The listener works: an injected inline script is blocked and reported."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    watched = Watched(context, live_server.url)
    page = watched.visit("/login/")
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
        " document.body.appendChild(s); }"
    )
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.x") is None
    context.close()
