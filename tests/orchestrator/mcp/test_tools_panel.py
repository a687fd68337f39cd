"""The session page's Tools panel (harness/portal/tools_views.py, orchestrator/selectors_tools.py): every tool a
run of the session is offered — built-in and each MCP server's — with its approval policy and availability;
a server that does not start is listed as unavailable with its reason. Real MCP servers, the real view."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from orchestrator.mcp.manager import mcp_shutdown
from orchestrator.services.members import session_member_set
from tests.helpers import db

pytestmark = pytest.mark.django_db(transaction=True)

ROW = re.compile(r'<tr data-tool="([^"]+)" class="(available|unavailable)">.*?data-policy="(\w+)".*?'
                 r'<td class="availability">(.*?)</td>', re.S)


def rows(body: str) -> dict[str, tuple[str, str]]:
    """tool name → (approval policy, availability text)."""
    return {name: (policy, html.unescape(availability)) for name, _, policy, availability in ROW.findall(body)}


def panel(user, session_id):
    """The panel as htmx fetches it (run through `db`: on a thread of the test's loop, whose MCP manager the
    view then asks, as a request thread of Daphne's does)."""
    client = Client()
    client.force_login(user)
    return client.get(f"/sessions/{session_id}/tools", headers={"HX-Request": "true"})


async def test_the_panel_lists_builtin_and_mcp_tools_with_their_policies_and_an_unavailable_servers_reason(
        user, session, mcp_config, http_server):
    url, _, _ = http_server
    mcp_config({"search": {"url": url, "approval": "auto",
                           "tools": {"repeat": {"approval": "ask"}, "fail": {"approval": "deny"}}},
                "broken": {"command": "/nonexistent/mcp-server", "approval": "ask"}})
    try:
        response = await db(panel, user, session.id)
    finally:
        await mcp_shutdown()
    assert response.status_code == 200
    tools = rows(response.content.decode())
    # Built-in tools with their own policies (the test registry's too), available (the sandbox works here).
    assert tools["clock"] == ("auto", "available")
    assert tools["shell"] == ("ask", "available")
    assert tools["forbidden"][0] == "deny"
    # The HTTP server's tools, each with its policy: the server's default, or the per-tool override.
    assert tools["mcp__search__wait"] == ("auto", "available")
    assert tools["mcp__search__repeat"] == ("ask", "available")
    assert tools["mcp__search__fail"] == ("deny", "available")
    # The stdio server that cannot start: unavailable, and why.
    policy, availability = tools["mcp__broken__*"]
    assert policy == "ask"
    assert availability.startswith("unavailable: the server did not start"), availability
    assert "MCP server broken (stdio)" in response.content.decode()


def test_the_panel_says_why_the_shell_is_unavailable_and_is_only_for_members(client, user, other_user, session,
                                                                              settings):
    settings.HARNESS_BWRAP = "/nonexistent/bwrap"  # bubblewrap cannot run: commands are refused
    settings.HARNESS_UNSAFE_TOOLS = False
    client.force_login(user)
    tools = rows(client.get(f"/sessions/{session.id}/tools").content.decode())
    policy, availability = tools["shell"]
    assert availability.startswith("unavailable: commands are disabled on this server"), availability
    assert tools["read_file"] == ("auto", "available")
    assert not any(name.startswith("mcp__") for name in tools)  # no HARNESS_MCP_CONFIG, no MCP tools

    client.force_login(other_user)
    assert client.get(f"/sessions/{session.id}/tools").status_code == 404
    session_member_set(session_id=session.id, user=user, kind="user", name=other_user.get_username(), role="viewer")
    assert "clock" in rows(client.get(f"/sessions/{session.id}/tools").content.decode())


def test_the_session_page_has_the_panel_closed_fetching_its_list_when_opened(client, user, session):
    client.force_login(user)
    body = client.get(f"/sessions/{session.id}/").content.decode()
    assert re.search(r'<details id="tools" class="tools-panel" aria-label="Tools"\s+'
                     rf'hx-get="/sessions/{session.id}/tools" hx-trigger="toggle\[this\.open\]"', body)
    assert "<summary>Tools</summary>" in body


async def test_a_viewer_opening_the_panel_starts_no_server(user, make_user, session, mcp_config):
    """Listing starts a session's stdio server as a run would — for those who can start runs only."""
    mcp_config({"broken": {"command": "/nonexistent/mcp-server"}})
    viewer = await db(make_user, "vera")
    await db(session_member_set, session_id=session.id, user=user, kind="user", name="vera", role="viewer")
    try:
        as_viewer = rows((await db(panel, viewer, session.id)).content.decode())
        as_owner = rows((await db(panel, user, session.id)).content.decode())
    finally:
        await mcp_shutdown()
    assert as_viewer["mcp__broken__*"][1] == "unavailable: not running: it starts with this session's next run"
    assert as_owner["mcp__broken__*"][1].startswith("unavailable: the server did not start")  # the owner's started it
