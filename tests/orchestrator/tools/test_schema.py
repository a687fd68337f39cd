"""validate_arguments: the subset of JSON Schema the tools use."""

from __future__ import annotations

import pytest

from orchestrator.tools.builtin.sleep import sleep
from orchestrator.tools.schema import validate_arguments

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 5},
        "count": {"type": "integer", "minimum": 1, "maximum": 10},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "flag": {"type": "boolean"},
        "options": {"type": "object"},
        "items": {"type": "array"},
        "anything": {},
    },
    "required": ["name", "count"],
    "additionalProperties": False,
}


def test_valid_arguments_have_no_errors():
    arguments = {
        "name": "abcde", "count": 10, "ratio": 0.5, "flag": False, "options": {}, "items": [1], "anything": None,
    }
    assert validate_arguments(arguments, SCHEMA) == []


def test_boundaries_are_inclusive():
    assert validate_arguments({"name": "", "count": 1, "ratio": 0}, SCHEMA) == []
    assert validate_arguments({"name": "x", "count": 10, "ratio": 1}, SCHEMA) == []
    assert validate_arguments({"name": "x", "count": 1, "ratio": 1.0}, SCHEMA) == []


def test_missing_required_arguments():
    assert validate_arguments({}, SCHEMA) == ["missing required argument 'name'", "missing required argument 'count'"]
    assert validate_arguments({"name": "x"}, SCHEMA) == ["missing required argument 'count'"]


@pytest.mark.parametrize(
    ("name", "value", "expected_type"),
    [
        ("name", 3, "string"),
        ("name", None, "string"),
        ("count", "3", "integer"),
        ("count", 3.0, "integer"),
        ("count", True, "integer"),  # bool is an int in Python, but not an integer in JSON
        ("count", False, "integer"),
        ("ratio", True, "number"),
        ("ratio", "0.5", "number"),
        ("flag", 1, "boolean"),
        ("flag", "true", "boolean"),
        ("options", [], "object"),
        ("items", {}, "array"),
        ("items", "a,b", "array"),
    ],
)
def test_wrong_types(name, value, expected_type):
    arguments = {"name": "x", "count": 1, name: value}
    assert validate_arguments(arguments, SCHEMA) == [f"argument {name!r} must be of type {expected_type}"]


def test_integers_are_numbers():
    assert validate_arguments({"name": "x", "count": 1, "ratio": 1}, SCHEMA) == []


def test_a_property_without_a_type_accepts_anything():
    for value in (None, 1, "s", [], {}, True):
        assert validate_arguments({"name": "x", "count": 1, "anything": value}, SCHEMA) == []


def test_wrong_type_is_reported_once_without_range_checks():
    # A string count must not reach `value < minimum` (which would raise TypeError).
    assert validate_arguments({"name": "x", "count": "100"}, SCHEMA) == ["argument 'count' must be of type integer"]


def test_additional_properties_false():
    assert validate_arguments({"name": "x", "count": 1, "extra": 1, "more": 2}, SCHEMA) == [
        "unexpected argument 'extra'",
        "unexpected argument 'more'",
    ]


def test_additional_properties_allowed_when_not_false():
    schema = {key: value for key, value in SCHEMA.items() if key != "additionalProperties"}
    assert validate_arguments({"name": "x", "count": 1, "extra": 1}, schema) == []
    assert validate_arguments({"extra": 1}, {"type": "object", "properties": {}}) == []


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"count": 0}, "argument 'count' must be at least 1"),
        ({"count": -5}, "argument 'count' must be at least 1"),
        ({"count": 11}, "argument 'count' must be at most 10"),
        ({"ratio": -0.01}, "argument 'ratio' must be at least 0"),
        ({"ratio": 1.5}, "argument 'ratio' must be at most 1"),
    ],
)
def test_minimum_and_maximum(arguments, error):
    assert validate_arguments({"name": "x", "count": 1, **arguments}, SCHEMA) == [error]


def test_max_length():
    assert validate_arguments({"name": "abcdef", "count": 1}, SCHEMA) == [
        "argument 'name' must be at most 5 characters"
    ]
    assert validate_arguments({"name": "ééééé", "count": 1}, SCHEMA) == []  # characters, not bytes


def test_several_errors_are_all_reported():
    errors = validate_arguments({"count": 0, "name": "toolong", "bogus": 1}, SCHEMA)
    assert sorted(errors) == sorted([
        "unexpected argument 'bogus'",
        "argument 'count' must be at least 1",
        "argument 'name' must be at most 5 characters",
    ])


@pytest.mark.parametrize("arguments", [None, [], ["name"], "name=x", 3, True])
def test_non_object_arguments(arguments):
    assert validate_arguments(arguments, SCHEMA) == ["arguments must be a JSON object"]


def test_the_sleep_tool_schema():
    assert validate_arguments({"seconds": 1.5}, sleep.parameters) == []
    assert validate_arguments({"seconds": 3601}, sleep.parameters) == ["argument 'seconds' must be at most 3600"]
    assert validate_arguments({"seconds": True}, sleep.parameters) == ["argument 'seconds' must be of type number"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(value):
    # Every comparison with NaN is false, so NaN used to pass minimum/maximum; Python's json accepts NaN and
    # Infinity, and sleep(seconds=NaN) never returns.
    assert validate_arguments({"seconds": value}, sleep.parameters) == ["argument 'seconds' must be a finite number"]
    assert validate_arguments({"name": "x", "count": 1, "ratio": value}, SCHEMA) == [
        "argument 'ratio' must be a finite number"
    ]


# Full JSON Schema (Draft 2020-12): what the subset checker silently let through.

RICH = {
    "type": "object",
    "properties": {
        "mode": {"enum": ["fast", "slow"]},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "options": {
            "type": "object",
            "properties": {"depth": {"type": "integer", "minimum": 0}},
            "required": ["depth"],
            "additionalProperties": False,
        },
        "note": {"type": ["string", "null"]},
    },
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("arguments", "errors"),
    [
        ({"mode": "medium"}, ['argument \'mode\' must be one of "fast", "slow"']),
        ({"code": "abc"}, ["argument 'code' must match the pattern '^[A-Z]{3}$'"]),
        ({"tags": ["a", 2]}, ["argument 'tags[1]' must be of type string"]),
        ({"tags": ["a", "b", "c"]}, ["argument 'tags' must have at most 2 items"]),
        ({"options": {"depth": -1}}, ["argument 'options.depth' must be at least 0"]),
        ({"options": {}}, ["missing required argument 'options.depth'"]),
        ({"options": {"depth": 1, "x": 1}}, ["unexpected argument 'options.x'"]),
        ({"note": 3}, ["argument 'note' must be of type string or null"]),
        ({"tags": [float("nan")]}, ["argument 'tags[0]' must be a finite number"]),
    ],
)
def test_nested_and_richer_keywords(arguments, errors):
    assert validate_arguments(arguments, RICH) == errors


def test_valid_rich_arguments():
    arguments = {"mode": "fast", "code": "ABC", "tags": ["a"], "options": {"depth": 0}, "note": None}
    assert validate_arguments(arguments, RICH) == []


def test_a_tool_with_an_invalid_schema_is_refused_at_start_up():
    from django.core.exceptions import ImproperlyConfigured

    from orchestrator.tools.registry import Tool

    with pytest.raises(ImproperlyConfigured, match="tool broken: its parameters are not a valid JSON Schema"):
        Tool(name="broken", description="", parameters={"type": "object", "properties": {"x": {"type": "str"}}},
             run=sleep.run)
