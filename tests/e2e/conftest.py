"""End-to-end fixtures: the real server (`manage.py serve` in a subprocess, its own SQLite file), Debian's
Chromium driven by Playwright's sync API, and a logged-in browser context per test.

These tests never touch the test database (no `django_db`): the browser and the API talk to the server
process, which owns its database. Nothing here is skipped: without /usr/bin/chromium every test fails with
a message saying how to install it.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from .support import (
    PASSWORD,
    USERNAME,
    VIEWPORT,
    WS_PROBE,
    Api,
    chromium_path,
    launch,
    login,
    started_server,
)

# Generous: the server runs a real turn loop, and CI machines are slow. Every wait is on a condition.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="package")
def server(tmp_path_factory):
    with started_server(tmp_path_factory.mktemp("e2e-server")) as instance:
        yield instance


@pytest.fixture(scope="package")
def api(server) -> Api:
    return Api(server.base_url, server.token)


@pytest.fixture(scope="package")
def playwright_driver():
    missing = None
    try:
        chromium_path()
    except RuntimeError as error:
        missing = str(error)
    if missing:
        pytest.fail(missing, pytrace=False)  # never a skip: CI installs Chromium (.ci/run)
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture(scope="package")
def browser(playwright_driver):
    instance = launch(playwright_driver)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture(scope="package")
def auth_state(browser, server):
    """Log in once through the real form; every test's context starts with that cookie jar."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        login(page, server.base_url, USERNAME, PASSWORD)
        return context.storage_state()
    finally:
        context.close()


def _context(browser, auth_state, **options):
    context = browser.new_context(**{"storage_state": auth_state, "viewport": VIEWPORT, **options})
    context.add_init_script(WS_PROBE)
    errors: list[str] = []
    context.on("weberror", lambda web_error: errors.append(str(web_error.error)))
    return context, errors


@pytest.fixture
def context(browser, auth_state):
    """A fresh logged-in browser context; uncaught page errors fail the test at teardown."""
    instance, errors = _context(browser, auth_state)
    yield instance
    instance.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def make_context(browser, auth_state):
    """For tests that need other context options (a phone viewport, dark mode)."""
    made = []

    def make(**options):
        instance, errors = _context(browser, auth_state, **options)
        made.append((instance, errors))
        return instance

    yield make
    for instance, errors in made:
        instance.close()
        assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def context_as(make_context, server):
    """A browser context logged in as another (existing) user, e.g. a session's owner made by
    `server.create_token`, while `page` is alice, a member."""

    def make(username: str):
        instance = make_context(storage_state=None)
        instance.add_cookies([{"name": "sessionid", "value": server.login_cookie(username), "url": server.base_url}])
        return instance

    return make


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture
def session_id(api, request):
    """A fresh session owned by the logged-in user; any run still live at the end is stopped."""
    sid = api.new_session(request.node.name.removeprefix("test_").replace("_", " ")[:60])
    yield sid
    api.call("POST", f"/api/sessions/{sid}/stop", {})
