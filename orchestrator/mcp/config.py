"""HARNESS_MCP_CONFIG: the MCP servers whose tools runs may use, in the common `mcpServers` shape.

    {"mcpServers": {
        "files": {"command": "python", "args": ["-m", "my_server"], "env": {"TOKEN": "..."}, "cwd": "..."},
        "search": {"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer ..."}},
        "slow": {"command": "...", "approval": "auto", "timeout_seconds": 120,
                 "tools": {"wait": {"approval": "ask", "on_stop": "cancel"}}}}}

`command` → a stdio server (one process per session, in that session's sandbox), `url` → Streamable HTTP
(one client session per worker process). `approval` (auto | ask | deny, default ask) and `on_stop`
(cancel, the default | finish) are per server with per-tool overrides; `timeout_seconds` per server
(default 60); `"network": true` gives a stdio server the network. A file that breaks any of this is refused
by the system checks (`manage.py check`, so `serve` and `runworker`) with a message naming server and field.

A tool is offered to the model as `mcp__<server>__<tool>` (see `tool_name`).
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from ..tools.registry import ApprovalPolicy, CancellationPolicy

DEFAULT_TIMEOUT_SECONDS = 60.0
NAME_LIMIT = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_ON_STOP = {"cancel": "cancellable", "finish": "must_finish"}
_SERVER_FIELDS = {"command", "args", "env", "cwd", "url", "headers", "approval", "on_stop", "timeout_seconds",
                  "network", "tools"}
_TOOL_FIELDS = {"approval", "on_stop"}


class McpConfigError(ValueError):
    """The configuration cannot be used; the message names the file, server and field."""


@dataclass(frozen=True)
class ToolPolicy:
    approval: ApprovalPolicy
    cancellation: CancellationPolicy


@dataclass(frozen=True)
class ServerConfig:
    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    approval: ApprovalPolicy = "ask"
    cancellation: CancellationPolicy = "cancellable"
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    network: bool = False
    tools: dict[str, ToolPolicy] = field(default_factory=dict)

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def policy(self, tool: str) -> ToolPolicy:
        return self.tools.get(tool, ToolPolicy(self.approval, self.cancellation))


def sanitized(text: str) -> str:
    return _UNSAFE.sub("_", text)


def tool_name(server: str, tool: str) -> str:
    """The name the model sees: `mcp__<server>__<tool>`, characters outside [A-Za-z0-9_-] as `_`, ≤ 64."""
    return f"mcp__{sanitized(server)}__{sanitized(tool)}"[:NAME_LIMIT]


def split_tool_name(name: str) -> tuple[str, str] | None:
    """(server, tool) of a name `tool_name` made, for showing a call: the configured server whose prefix it has
    (its name as configured), else split at the first "__" after "mcp__"; None if it is no MCP tool's name.
    The tool part is as the model saw it (sanitised, ≤ 64 characters in all)."""
    if not name.startswith("mcp__"):
        return None
    for server in _configured_names():
        prefix = tool_name(server.name, "")
        if name.startswith(prefix) and len(name) > len(prefix):
            return server.name, name[len(prefix):]
    server_part, separator, tool = name.removeprefix("mcp__").partition("__")
    return (server_part, tool) if separator and server_part and tool else None


def _configured_names() -> list[ServerConfig]:
    """load_config() for showing calls (every approval card asks): read again only when the file changes."""
    path = settings.HARNESS_MCP_CONFIG
    try:
        changed = os.stat(path).st_mtime_ns if path else None
    except OSError:
        return []
    return _config_as_of(str(path), changed)


@functools.lru_cache(maxsize=4)
def _config_as_of(path: str, changed: int | None) -> list[ServerConfig]:
    try:
        return load_config(path) if path else []
    except McpConfigError:
        return []


def load_config(path: str | os.PathLike | None = None) -> list[ServerConfig]:
    """The configured servers (none when HARNESS_MCP_CONFIG is empty); McpConfigError if it is unusable."""
    path = settings.HARNESS_MCP_CONFIG if path is None else path
    if not path:
        return []
    shown = f"HARNESS_MCP_CONFIG ({path})"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise McpConfigError(f"{shown} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise McpConfigError(f"{shown} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise McpConfigError(f'{shown} must be a JSON object with an "mcpServers" object')
    servers = [_server(name, raw, shown) for name, raw in data["mcpServers"].items()]
    prefixes: dict[str, str] = {}
    for server in servers:
        prefix = tool_name(server.name, "")
        if prefix in prefixes:
            raise McpConfigError(f"{shown}: servers {prefixes[prefix]!r} and {server.name!r} would give their tools "
                                 f"the same names ({prefix}…): rename one")
        prefixes[prefix] = server.name
    return servers


def _server(name: str, raw: Any, shown: str) -> ServerConfig:
    where = f"{shown}: server {name!r}"
    if not name or len(tool_name(name, "x")) >= NAME_LIMIT:
        raise McpConfigError(f"{where}: the name must be 1 to {NAME_LIMIT - 8} characters long")
    if not isinstance(raw, dict):
        raise McpConfigError(f"{where} must be a JSON object")
    if unknown := sorted(set(raw) - _SERVER_FIELDS):
        raise McpConfigError(f"{where}: unknown field {unknown[0]!r}")
    if ("command" in raw) == ("url" in raw):
        raise McpConfigError(f'{where} needs exactly one of "command" (stdio) or "url" (Streamable HTTP)')
    fields: dict[str, Any] = {"name": name}
    if "command" in raw:
        fields["command"] = _string(raw, "command", where)
        fields["args"] = tuple(_strings(raw, "args", where))
        fields["env"] = _mapping(raw, "env", where)
        if "cwd" in raw:
            cwd = _string(raw, "cwd", where)
            if not os.path.isabs(cwd):
                raise McpConfigError(f'{where}: field "cwd" must be an absolute path')
            fields["cwd"] = cwd
        if "network" in raw:
            if not isinstance(raw["network"], bool):
                raise McpConfigError(f'{where}: field "network" must be true or false')
            fields["network"] = raw["network"]
        if "headers" in raw:
            raise McpConfigError(f'{where}: field "headers" is for "url" servers only')
    else:
        url = _string(raw, "url", where)
        if not re.match(r"^https?://[^/\s]+", url):
            raise McpConfigError(f'{where}: field "url" must be an http:// or https:// URL')
        fields["url"] = url
        fields["headers"] = _mapping(raw, "headers", where)
        for http_only in ("args", "env", "cwd", "network"):
            if http_only in raw:
                raise McpConfigError(f'{where}: field "{http_only}" is for "command" servers only')
    fields["approval"] = _approval(raw, where)
    fields["cancellation"] = _on_stop(raw, where)
    if "timeout_seconds" in raw:
        timeout = raw["timeout_seconds"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 86400:
            raise McpConfigError(f'{where}: field "timeout_seconds" must be a number of seconds (0 < n ≤ 86400)')
        fields["timeout_seconds"] = float(timeout)
    tools = raw.get("tools", {})
    if not isinstance(tools, dict):
        raise McpConfigError(f'{where}: field "tools" must be an object of tool names')
    policies = {}
    for tool, overrides in tools.items():
        tool_where = f"{where}, tool {tool!r}"
        if not isinstance(overrides, dict):
            raise McpConfigError(f"{tool_where} must be a JSON object")
        if unknown := sorted(set(overrides) - _TOOL_FIELDS):
            raise McpConfigError(f"{tool_where}: unknown field {unknown[0]!r}")
        policies[tool] = ToolPolicy(
            _approval(overrides, tool_where, fields["approval"]), _on_stop(overrides, tool_where, fields["cancellation"])
        )
    fields["tools"] = policies
    return ServerConfig(**fields)


def _string(raw: dict, key: str, where: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value or "\0" in value:
        raise McpConfigError(f'{where}: field "{key}" must be a non-empty string')
    return value


def _strings(raw: dict, key: str, where: str) -> list[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and "\0" not in item for item in value):
        raise McpConfigError(f'{where}: field "{key}" must be a list of strings')
    return value


def _mapping(raw: dict, key: str, where: str) -> dict[str, str]:
    value = raw.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and "\0" not in k + v for k, v in value.items()
    ):
        raise McpConfigError(f'{where}: field "{key}" must be an object of strings')
    return dict(value)


def _approval(raw: dict, where: str, default: str = "ask") -> ApprovalPolicy:
    value = raw.get("approval", default)
    if value not in ("auto", "ask", "deny"):
        raise McpConfigError(f'{where}: field "approval" must be "auto", "ask" or "deny"')
    return value


def _on_stop(raw: dict, where: str, default: str = "cancellable") -> CancellationPolicy:
    if "on_stop" not in raw:
        return default
    if raw["on_stop"] not in _ON_STOP:
        raise McpConfigError(f'{where}: field "on_stop" must be "cancel" or "finish"')
    return _ON_STOP[raw["on_stop"]]


def config_problem() -> str | None:
    """Why HARNESS_MCP_CONFIG cannot be used, or None (for the system checks)."""
    try:
        load_config()
    except McpConfigError as exc:
        return str(exc)
    return None
