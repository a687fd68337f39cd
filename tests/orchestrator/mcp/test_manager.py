"""What a server's tools become in the registry (names, schema as-is, policies, refusals) and how a call's
result becomes the tool message."""

from __future__ import annotations

import base64

import mcp_types as types

from orchestrator.mcp.config import ServerConfig, ToolPolicy
from orchestrator.mcp.connection import ServerConnection
from orchestrator.mcp.manager import McpManager, mcp_tool, result_text

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}


def listed(name: str, schema=SCHEMA, description="Does it.") -> types.Tool:
    return types.Tool(name=name, description=description, input_schema=schema)


def test_a_servers_tool_keeps_its_schema_and_gets_the_servers_policies():
    config = ServerConfig(name="slow", url="http://h/mcp", approval="auto",
                          tools={"wait": ToolPolicy("ask", "must_finish")})
    wait, other = mcp_tool(config, listed("wait")), mcp_tool(config, listed("other"))
    assert wait.name == "mcp__slow__wait" and wait.parameters == SCHEMA and wait.description == "Does it."
    assert (wait.approval, wait.cancellation, wait.idempotent) == ("ask", "must_finish", False)
    assert (other.approval, other.cancellation) == ("auto", "cancellable")


def test_colliding_names_and_invalid_schemas_are_refused_with_a_reason():
    config = ServerConfig(name="s", url="http://h/mcp")
    manager = McpManager([config])
    connection = ServerConnection(config)
    connection.tools = [listed("get.x"), listed("get_x"), listed("bad", schema={"type": "nonsense"}), listed("good")]
    assert [tool.name for tool in manager._tools_of(connection)] == ["mcp__s__good"]
    assert "would all be named mcp__s__get_x" in manager.refused["mcp__s__get_x"]
    assert "not a valid JSON Schema" in manager.refused["mcp__s__bad"]


def test_results_become_the_tool_message(settings):
    image = base64.b64encode(b"\x89PNG" + bytes(96)).decode()
    result = types.CallToolResult(content=[
        types.TextContent(type="text", text="first"),
        types.TextContent(type="text", text="second"),
        types.ImageContent(type="image", data=image, mime_type="image/png"),
        types.ResourceLink(type="resource_link", uri="file:///a.txt", name="a", mime_type="text/plain"),
    ], structured_content={"count": 2})
    assert result_text(result) == ('first\nsecond\n[image: image/png, 100 bytes]\n'
                                   '[resource link: file:///a.txt (text/plain)]\n{"count": 2}')
    # The SDK's servers repeat a plain result as {"result": …}: said once.
    assert result_text(types.CallToolResult(content=[types.TextContent(type="text", text="ok")],
                                            structured_content={"result": "ok"})) == "ok"
    settings.HARNESS_TOOL_OUTPUT_LIMIT_BYTES = 10
    assert result_text(types.CallToolResult(content=[types.TextContent(type="text", text="x" * 25)])) == (
        "x" * 10 + "\n… (truncated: 15 more bytes)")
