"""Approval cards for MCP calls say which server and which tool ("files · read_file") and show the arguments
as pretty JSON in a code block; other tools' cards keep the tool's name."""

from __future__ import annotations

import html
import json
import re

import pytest

from tests.factories import park_on_approval

pytestmark = pytest.mark.django_db

ARGUMENTS = {"path": "notes/<today>.md", "lines": [1, 20], "options": {"follow": False}}


def card_of(client, session) -> str:
    body = client.get(f"/sessions/{session.id}/").content.decode()
    return body[body.index('<section id="approvals"'):body.index("</section>", body.index('<section id="approvals"'))]


@pytest.fixture
def configured(settings, tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"files": {"command": "files-server"},
                                               "my.search": {"url": "http://127.0.0.1:9/mcp"}}}))
    settings.HARNESS_MCP_CONFIG = str(path)


@pytest.mark.parametrize(("name", "server", "tool"), [
    ("mcp__files__read_file", "files", "read_file"),
    ("mcp__my_search__find", "my.search", "find"),  # the server's name as configured, not as sanitised
    ("mcp__gone__tool_x", "gone", "tool_x"),  # a server no longer configured: split at the first "__"
])
def test_an_mcp_calls_card_names_the_server_and_the_tool_and_shows_pretty_json(client, user, session, configured,
                                                                                name, server, tool):
    park_on_approval(session, name=name, arguments=ARGUMENTS)
    client.force_login(user)
    card = card_of(client, session)
    assert (f'<strong class="mcp-call" title="{name}"><span class="mcp-server">{server}</span> · '
            f'<span class="mcp-tool">{tool}</span></strong> wants to run') in card
    code = re.search(r'<pre class="arguments"><code class="language-json">(.*?)</code></pre>', card, re.S)
    assert code, card
    assert html.unescape(code.group(1)) == json.dumps(ARGUMENTS, indent=2)  # pretty, and escaped in the page
    assert "&lt;today&gt;" in code.group(1)


def test_other_tools_cards_keep_the_tools_name(client, user, session, configured):
    park_on_approval(session, name="shell", arguments={"command": "ls"})
    client.force_login(user)
    card = card_of(client, session)
    assert "<strong>shell</strong> wants to run" in card and "mcp-call" not in card
    assert '<code class="language-json">{\n  &quot;command&quot;: &quot;ls&quot;\n}</code>' in card
