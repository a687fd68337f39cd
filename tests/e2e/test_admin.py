"""The Django admin's "Stop run" button on a live run's page, in Chromium against the real server: the owner's open
tab sees the run stop, and the run's page then says it was stopped from the admin."""

from __future__ import annotations

from playwright.sync_api import expect

from .support import LONG_STREAM, VIEWPORT, open_session

ROOT_PASSWORD = "root-e2e-password-1"


def test_the_admin_stops_a_live_run_from_its_page_and_the_owners_tab_sees_it(page, browser, server, api, session_id):
    server.manage("shell", "-c", "from django.contrib.auth import get_user_model; U = get_user_model(); "
                  "U.objects.filter(username='root').exists() or "
                  f"U.objects.create_superuser('root', 'root@example.com', {ROOT_PASSWORD!r})")
    open_session(page, server.base_url, session_id)  # alice's tab
    run_id = api.run_start(session_id, LONG_STREAM)
    expect(page.locator("#composer .composer-send")).to_have_text("stop")

    context = browser.new_context(viewport=VIEWPORT)
    try:
        admin = context.new_page()
        admin.goto(f"{server.base_url}/admin/login/?next=/admin/orchestrator/run/{run_id}/change/")
        admin.get_by_label("Username").fill("root")
        admin.get_by_label("Password").fill(ROOT_PASSWORD)
        admin.get_by_role("button", name="Log in").click()
        admin.get_by_role("button", name="Stop this run").click()
        # The message as the admin shows it (first letter capitalised).
        expect(admin.locator(".messagelist")).to_contain_text(f"Run {run_id}: accepted, prior state ")

        expect(page.locator("#composer")).to_have_attribute("data-mode", "idle")  # the owner's tab: stopped
        admin.reload()
        expect(admin.locator(".field-stop_origin .readonly")).to_have_text("stopped by root (admin)")
        expect(admin.locator(".field-receipt_summary .readonly")).to_contain_text("stop: stopped by root (admin)")
        expect(admin.get_by_role("button", name="Stop this run")).to_have_count(0)  # nothing left to stop
    finally:
        context.close()
    assert (api.run(run_id)["stop"]["reason"], api.run(run_id)["stop"]["requested_by"]) == ("admin", "root")
