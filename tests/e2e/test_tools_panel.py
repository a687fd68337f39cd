"""The session page's Tools panel: opened, it lists the built-in tools and a real MCP server's (Streamable
HTTP) with their approval policies, and an MCP server that cannot start as unavailable, saying why."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from devtools.mcp_servers import HttpMcpServer, write_config

from .support import logged_in_page, open_session, started_server


@pytest.fixture
def mcp_server(tmp_path):
    """A server of this test's own, configured with a real MCP server over HTTP (`search`, `repeat` asks for
    approval) and one whose command does not exist (`broken`)."""
    with HttpMcpServer(tmp_path / "http-record") as search:
        config = write_config(tmp_path / "mcp.json", {
            "search": {"url": search.url, "approval": "auto", "tools": {"repeat": {"approval": "ask"}}},
            "broken": {"command": "/nonexistent/mcp-server", "approval": "ask"},
        })
        with started_server(tmp_path / "server", HARNESS_MCP_CONFIG=str(config)) as instance:
            yield instance


def test_the_tools_panel_lists_tools_with_their_policies_and_an_unavailable_server(browser, mcp_server):
    with logged_in_page(browser, mcp_server) as (page, api):
        session_id = api.new_session("tools")
        open_session(page, mcp_server.base_url, session_id)

        panel = page.get_by_role("group", name="Tools")
        rows = panel.locator("table.tools tbody tr")
        expect(panel).to_be_visible()
        expect(rows).to_have_count(0)  # closed: nothing fetched yet
        panel.locator("summary").click()

        clock = panel.locator('tr[data-tool="clock"]')
        expect(clock).to_be_visible()
        expect(clock.locator(".approval-policy")).to_have_text("auto")
        expect(clock.locator(".availability")).to_have_text("available")
        expect(panel.locator('tr[data-tool="shell"] .approval-policy')).to_have_text("ask")
        for name, policy in (("mcp__search__wait", "auto"), ("mcp__search__repeat", "ask")):
            row = panel.locator(f'tr[data-tool="{name}"]')
            expect(row).to_contain_text("MCP server search (http)")
            expect(row.locator(".approval-policy")).to_have_text(policy)
            expect(row.locator(".availability")).to_have_text("available")
        broken = panel.locator('tr[data-tool="mcp__broken__*"]')
        expect(broken).to_have_class("unavailable")
        expect(broken).to_contain_text("MCP server broken (stdio)")
        expect(broken.locator(".availability")).to_contain_text("unavailable: the server did not start")
