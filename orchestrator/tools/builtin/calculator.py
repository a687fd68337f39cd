"""Safe arithmetic: the expression is parsed with `ast` and only numbers and arithmetic operators are
evaluated — never `eval`."""

from __future__ import annotations

import ast
import math
import operator
from typing import Any

from ..registry import Tool, ToolContext, ToolError

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 10**100


def evaluate(expression: str) -> int | float:
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    try:
        return _eval(tree.body)
    except RecursionError:
        raise ToolError("expression is nested too deeply") from None


def _in_range(value: object) -> int | float:
    if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_MAGNITUDE:
        raise ToolError("result out of range")
    return value


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return _in_range(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError("exponent too large")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("result out of range") from None
        return _in_range(value)
    raise ToolError("only numbers and + - * / // % ** and parentheses are allowed")


async def _calculator(arguments: dict[str, Any], context: ToolContext) -> str:
    value = evaluate(arguments["expression"])
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


calculator = Tool(
    name="calculator",
    description="Evaluate an arithmetic expression, e.g. '12 * (3 + 4)'.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "maxLength": 1000}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    run=_calculator,
    idempotent=True,
)
