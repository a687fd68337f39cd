"""HARNESS_MCP_CONFIG: the pinned `mcpServers` format, its defaults, the names tools get, and the system check
that refuses a bad file (as `serve` and `runworker` do before they start) naming the server and field."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from orchestrator.mcp.config import McpConfigError, ToolPolicy, load_config, tool_name


def write(tmp_path, servers) -> str:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    return str(path)


def test_the_pinned_format_with_its_defaults_and_overrides(tmp_path):
    files, search, slow = load_config(write(tmp_path, {
        "files": {"command": "python", "args": ["-m", "my_server"], "env": {"TOKEN": "t"}, "cwd": "/srv/files"},
        "search": {"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer x"}},
        "slow": {"command": "slow-server", "approval": "auto", "timeout_seconds": 120, "network": True,
                 "tools": {"wait": {"approval": "ask", "on_stop": "finish"}}},
    }))
    assert (files.transport, files.command, files.args, files.env, files.cwd) == (
        "stdio", "python", ("-m", "my_server"), {"TOKEN": "t"}, "/srv/files")
    assert (files.approval, files.cancellation, files.timeout_seconds, files.network) == ("ask", "cancellable", 60, False)
    assert (search.transport, search.url, search.headers) == ("http", "http://127.0.0.1:9000/mcp", {"Authorization": "Bearer x"})
    assert slow.timeout_seconds == 120 and slow.network
    assert slow.policy("wait") == ToolPolicy("ask", "must_finish")
    assert slow.policy("other") == ToolPolicy("auto", "cancellable")


def test_no_file_no_servers(settings):
    settings.HARNESS_MCP_CONFIG = ""
    assert load_config() == []


@pytest.mark.parametrize(("servers", "message"), [
    ({"a": {}}, "server 'a' needs exactly one of \"command\" (stdio) or \"url\""),
    ({"a": {"command": "x", "url": "http://h/"}}, "server 'a' needs exactly one of"),
    ({"a": {"command": "x", "approval": "sometimes"}}, "server 'a': field \"approval\" must be"),
    ({"a": {"url": "http://h/", "tools": {"t": {"on_stop": "later"}}}}, "server 'a', tool 't': field \"on_stop\" must be"),
    ({"a": {"command": "x", "timeout_seconds": 0}}, "server 'a': field \"timeout_seconds\""),
    ({"a": {"command": "x", "args": "-m x"}}, "server 'a': field \"args\" must be a list of strings"),
    ({"a": {"command": "x", "env": {"K": 1}}}, "server 'a': field \"env\" must be an object of strings"),
    ({"a": {"command": "x", "cwd": "relative"}}, "server 'a': field \"cwd\" must be an absolute path"),
    ({"a": {"url": "ftp://h/"}}, "server 'a': field \"url\" must be an http:// or https:// URL"),
    ({"a": {"url": "http://h/", "env": {}}}, "server 'a': field \"env\" is for \"command\" servers only"),
    ({"a": {"command": "x", "headers": {}}}, "server 'a': field \"headers\" is for \"url\" servers only"),
    ({"a": {"command": "x", "colour": "red"}}, "server 'a': unknown field 'colour'"),
    ({"a.b": {"command": "x"}, "a_b": {"command": "y"}}, "servers 'a.b' and 'a_b' would give their tools the same names"),
])
def test_a_bad_file_is_refused_naming_the_server_and_field(tmp_path, servers, message):
    with pytest.raises(McpConfigError) as refused:
        load_config(write(tmp_path, servers))
    assert message in str(refused.value)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(McpConfigError, match="cannot be read"):
        load_config(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(McpConfigError, match="is not valid JSON"):
        load_config(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    with pytest.raises(McpConfigError, match='"mcpServers" object'):
        load_config(str(tmp_path / "list.json"))


def test_the_start_up_check_refuses_a_bad_file(settings, tmp_path):
    settings.HARNESS_MCP_CONFIG = write(tmp_path, {"slow": {"command": "x", "on_stop": "never"}})
    with pytest.raises(SystemCheckError, match="harness.E002") as refused:
        call_command("check")
    assert "server 'slow': field \"on_stop\" must be \"cancel\" or \"finish\"" in str(refused.value)
    settings.HARNESS_MCP_CONFIG = write(tmp_path, {"slow": {"command": "x", "on_stop": "finish"}})
    call_command("check")


def test_tool_names():
    assert tool_name("files", "read") == "mcp__files__read"
    assert tool_name("my.server", "get weather/now") == "mcp__my_server__get_weather_now"
    assert tool_name("s", "é-ok_1") == "mcp__s___-ok_1"
    long = tool_name("server", "x" * 100)
    assert len(long) == 64 and long.startswith("mcp__server__xxx")
