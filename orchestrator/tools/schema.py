"""Checks a tool call's arguments against the subset of JSON Schema the tools use.

Models do send malformed arguments; a call with bad arguments fails with a plain result the model can
read, instead of reaching the tool.
"""

from __future__ import annotations

import math
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def validate_arguments(arguments: Any, schema: dict[str, Any]) -> list[str]:
    if not isinstance(arguments, dict):
        return ["arguments must be a JSON object"]
    errors = []
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in arguments:
            errors.append(f"missing required argument {name!r}")
    if schema.get("additionalProperties") is False:
        errors.extend(f"unexpected argument {name!r}" for name in arguments if name not in properties)
    for name, spec in properties.items():
        if name not in arguments:
            continue
        value = arguments[name]
        expected = spec.get("type")
        if expected and not _is_type(value, expected):
            errors.append(f"argument {name!r} must be of type {expected}")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(f"argument {name!r} must be a finite number")
            continue
        if "minimum" in spec and value < spec["minimum"]:
            errors.append(f"argument {name!r} must be at least {spec['minimum']}")
        if "maximum" in spec and value > spec["maximum"]:
            errors.append(f"argument {name!r} must be at most {spec['maximum']}")
        if "maxLength" in spec and len(value) > spec["maxLength"]:
            errors.append(f"argument {name!r} must be at most {spec['maxLength']} characters")
    return errors


def _is_type(value: Any, expected: str) -> bool:
    if isinstance(value, bool) and expected in ("integer", "number"):
        return False
    return isinstance(value, _TYPES.get(expected, (object,)))
