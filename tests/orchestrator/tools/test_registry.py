"""The tool registry: built-ins plus settings.HARNESS_EXTRA_TOOLS, loaded by dotted path."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from orchestrator.tools.builtin.clock import clock
from orchestrator.tools.registry import Tool, ToolRegistry, get_registry, load_tool
from tests import tools as test_tools

BUILTINS = ["clock", "calculator", "sleep", "shell", "read_file", "write_file"]


async def _noop(arguments, context):
    return "ok"


def make_tool(name: str = "t", **kwargs) -> Tool:
    return Tool(name=name, description="d", parameters={"type": "object", "properties": {}}, run=_noop, **kwargs)


def test_registry_has_the_builtins_then_the_extra_tools(settings):
    assert list(settings.HARNESS_EXTRA_TOOLS) == ["tests.tools.side_effect", "tests.tools.forbidden",
                                                 "tests.tools.finishing"]
    registry = get_registry()
    assert registry.names() == BUILTINS + ["side_effect", "forbidden", "finishing"]
    assert [tool.name for tool in registry] == registry.names()
    assert registry.get("side_effect") is test_tools.side_effect
    assert registry.get("no_such_tool") is None


@pytest.mark.parametrize(
    ("name", "approval", "cancellation", "idempotent"),
    [
        ("clock", "auto", "cancellable", True),
        ("calculator", "auto", "cancellable", True),
        ("sleep", "auto", "cancellable", True),
        ("shell", "ask", "cancellable", False),
        ("read_file", "auto", "cancellable", True),
        ("write_file", "ask", "must_finish", False),
        ("side_effect", "auto", "cancellable", False),
        ("forbidden", "deny", "cancellable", False),
        ("finishing", "auto", "must_finish", False),
    ],
)
def test_policies(name, approval, cancellation, idempotent):
    tool = get_registry().get(name)
    assert tool is not None
    assert (tool.approval, tool.cancellation, tool.idempotent) == (approval, cancellation, idempotent)


def test_every_tool_has_an_object_schema_and_a_description():
    for tool in get_registry():
        assert tool.description
        assert tool.parameters["type"] == "object"
        assert isinstance(tool.parameters.get("properties"), dict)


def test_registry_follows_the_setting(settings):
    settings.HARNESS_EXTRA_TOOLS = ["tests.tools.finishing"]
    assert get_registry().names() == BUILTINS + ["finishing"]
    settings.HARNESS_EXTRA_TOOLS = []
    assert get_registry().names() == BUILTINS


def test_load_tool():
    assert load_tool("orchestrator.tools.builtin.clock.clock") is clock


@pytest.mark.parametrize(
    "path",
    [
        "nodots",
        "no.such.module.tool",
        "orchestrator.tools.builtin.clock.no_such_attribute",
        "orchestrator.tools.builtin.nope.tool",
        "",
    ],
)
def test_load_tool_of_a_bad_path(path):
    with pytest.raises(ImproperlyConfigured, match="cannot import tool"):
        load_tool(path)


@pytest.mark.parametrize(
    "path",
    [
        "orchestrator.tools.registry.ToolError",  # a class
        "orchestrator.tools.builtin.clock._clock",  # the coroutine function, not the Tool
        "orchestrator.tools.registry.BUILTIN_TOOLS",
        "os.path",  # a module
    ],
)
def test_load_tool_of_something_that_is_not_a_tool(path):
    with pytest.raises(ImproperlyConfigured, match="is not an orchestrator.tools.registry.Tool"):
        load_tool(path)


def test_a_bad_extra_tool_fails_the_registry(settings):
    settings.HARNESS_EXTRA_TOOLS = ["tests.tools.no_such_tool"]
    with pytest.raises(ImproperlyConfigured, match="cannot import tool"):
        get_registry()


def test_duplicate_names_are_refused():
    with pytest.raises(ImproperlyConfigured, match="two tools are named 'dup'"):
        ToolRegistry([make_tool("dup"), make_tool("other"), make_tool("dup")])


def test_an_extra_tool_cannot_shadow_a_builtin(settings):
    settings.HARNESS_EXTRA_TOOLS = ["orchestrator.tools.builtin.clock.clock"]
    with pytest.raises(ImproperlyConfigured, match="two tools are named 'clock'"):
        get_registry()


def test_tool_defaults():
    tool = make_tool()
    assert (tool.approval, tool.cancellation, tool.idempotent) == ("auto", "cancellable", False)
    assert not hasattr(tool, "extra")  # removed: nothing read it


@pytest.mark.parametrize("approval", ["maybe", "Ask", "", None, "yes"])
def test_tool_rejects_bad_approval(approval):
    with pytest.raises(ImproperlyConfigured, match="approval must be auto, ask or deny"):
        make_tool(approval=approval)


@pytest.mark.parametrize("cancellation", ["sometimes", "must-finish", "", None])
def test_tool_rejects_bad_cancellation(cancellation):
    with pytest.raises(ImproperlyConfigured, match="cancellation must be cancellable or must_finish"):
        make_tool(cancellation=cancellation)


@pytest.mark.parametrize(
    ("approval", "cancellation"), [("auto", "cancellable"), ("ask", "must_finish"), ("deny", "cancellable")]
)
def test_tool_accepts_good_policies(approval, cancellation):
    tool = make_tool(approval=approval, cancellation=cancellation)
    assert (tool.approval, tool.cancellation) == (approval, cancellation)
