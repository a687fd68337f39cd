"""Checks a tool call's arguments against the tool's JSON Schema (Draft 2020-12, with `jsonschema`).

Models do send malformed arguments; a call with bad arguments fails with a plain result the model can read
("missing required argument 'path'"), instead of reaching the tool. Two choices stricter than the
specification, because tools are Python: an integer is a JSON integer only (not 3.0), and NaN and
±Infinity (which Python's json accepts) are refused wherever they appear.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.validators import extend

_TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)
)
Validator = extend(Draft202012Validator, type_checker=_TYPE_CHECKER)


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why `schema` is not a valid Draft 2020-12 schema, or None."""
    try:
        Validator.check_schema(schema)
    except SchemaError as exc:
        return exc.message
    return None


def validate_arguments(arguments: Any, schema: dict[str, Any]) -> list[str]:
    if not isinstance(arguments, dict):
        return ["arguments must be a JSON object"]
    non_finite = list(_non_finite_paths(arguments, ()))
    errors = [f"argument {_name(path)} must be a finite number" for path in non_finite]
    for error in _validator(json.dumps(schema, sort_keys=True)).iter_errors(arguments):
        path = tuple(error.absolute_path)
        if any(path[:len(bad)] == bad for bad in non_finite):
            continue
        errors.extend(_messages(error, path))
    return errors


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Validator:
    return Validator(json.loads(schema_json))


def _messages(error: ValidationError, path: tuple) -> Iterator[str]:
    keyword, expected = error.validator, error.validator_value
    if keyword == "required":
        # jsonschema names the missing property only in its message: "<repr> is a required property".
        missing = ast.literal_eval(error.message.removesuffix(" is a required property"))
        yield f"missing required argument {_name((*path, missing))}"
    elif keyword == "additionalProperties" and expected is False:
        known = set(error.schema.get("properties", {}))
        for name in error.instance:
            if name not in known and not _matches_pattern(name, error.schema):
                yield f"unexpected argument {_name((*path, name))}"
    elif keyword == "type":
        types = expected if isinstance(expected, list) else [expected]
        yield f"argument {_name(path)} must be of type {' or '.join(types)}"
    elif keyword in _PLAIN:
        yield f"argument {_name(path)} {_PLAIN[keyword](expected)}"
    else:
        yield f"argument {_name(path)} is invalid: {error.message}"


_PLAIN = {
    "minimum": lambda limit: f"must be at least {limit}",
    "maximum": lambda limit: f"must be at most {limit}",
    "exclusiveMinimum": lambda limit: f"must be greater than {limit}",
    "exclusiveMaximum": lambda limit: f"must be less than {limit}",
    "minLength": lambda limit: f"must be at least {limit} characters",
    "maxLength": lambda limit: f"must be at most {limit} characters",
    "minItems": lambda limit: f"must have at least {limit} items",
    "maxItems": lambda limit: f"must have at most {limit} items",
    "enum": lambda values: "must be one of " + ", ".join(json.dumps(value) for value in values),
    "const": lambda value: f"must be {json.dumps(value)}",
    "pattern": lambda pattern: f"must match the pattern {pattern!r}",
}


def _matches_pattern(name: str, schema: dict[str, Any]) -> bool:
    return any(re.search(pattern, name) for pattern in schema.get("patternProperties", {}))


def _name(path: tuple) -> str:
    """'count' for a top-level argument, 'options.depth' or 'items[2]' below it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return repr(text) if path else "object"


def _non_finite_paths(value: Any, path: tuple) -> Iterator[tuple]:
    if isinstance(value, float) and not math.isfinite(value):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite_paths(item, (*path, index))
