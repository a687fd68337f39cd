"""The embedded model: a scripted provider that needs no network.

- A run whose first message starts with ``script:`` followed by JSON follows the script; each assistant turn
  consumes the next entry of ``turns``:
  ``{"text": "...", "delay_ms": 20}`` streams the text word by word, ``{"words": N, "delay_ms": 5}`` streams
  N filler words (``"markdown": true`` shapes them as Markdown: paragraphs of 40 words, some bold, some
  code), ``{"calls": [{"name": ..., "arguments": {...}}]}`` asks for tool calls (may be combined
  with text), ``{"error": "boom"}`` fails the model call, ``{"echo": true}`` answers with the model's input
  (each message as ``[role] text``, space-separated: tests read what the model was sent). When the script
  runs out the model says so and ends the run.
- Without a script it is a small demo agent: a friendly streamed reply, and a `clock` or `calculator` call
  when the message asks for the time or a sum.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .base import (
    Finish,
    ModelMessage,
    ModelRequest,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
    Usage,
    estimate_tokens,
)

SCRIPT_PREFIX = "script:"
MAX_DELAY_MS = 60_000
MAX_WORDS = 1_000_000
FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


@dataclass(frozen=True)
class ScriptTurn:
    text: str = ""
    words: int = 0
    delay_ms: float = 0
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    error: str | None = None
    markdown: bool = False
    echo: bool = False


def parse_script(raw: str) -> list[ScriptTurn]:
    """Parse the JSON after ``script:``; raise ProviderError with a plain explanation when it is invalid."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _invalid(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
        raise _invalid('expected an object with a "turns" list')
    turns = []
    for index, entry in enumerate(data["turns"]):
        where = f"turns[{index}]"
        if not isinstance(entry, dict):
            raise _invalid(f"{where} must be an object")
        unknown = set(entry) - {"text", "words", "delay_ms", "calls", "error", "markdown", "echo"}
        if unknown:
            raise _invalid(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
        text = entry.get("text", "")
        words = entry.get("words", 0)
        delay = entry.get("delay_ms", 0)
        error = entry.get("error")
        if not isinstance(text, str):
            raise _invalid(f"{where}.text must be a string")
        if isinstance(words, bool) or not isinstance(words, int) or not 0 <= words <= MAX_WORDS:
            raise _invalid(f"{where}.words must be an integer from 0 to {MAX_WORDS}")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY_MS:
            raise _invalid(f"{where}.delay_ms must be a number from 0 to {MAX_DELAY_MS}")
        if error is not None and not isinstance(error, str):
            raise _invalid(f"{where}.error must be a string")
        if not isinstance(entry.get("markdown", False), bool):
            raise _invalid(f"{where}.markdown must be true or false")
        echo = entry.get("echo", False)
        if not isinstance(echo, bool):
            raise _invalid(f"{where}.echo must be true or false")
        turns.append(
            ScriptTurn(
                text=text, words=words, delay_ms=float(delay), calls=_parse_calls(entry.get("calls", []), where),
                error=error, markdown=entry.get("markdown", False), echo=echo,
            )
        )
    return turns


def _parse_calls(raw: Any, where: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    if not isinstance(raw, list):
        raise _invalid(f"{where}.calls must be a list")
    calls = []
    for index, call in enumerate(raw):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            raise _invalid(f"{where}.calls[{index}] needs a non-empty string name")
        arguments = call.get("arguments", {})
        if not isinstance(arguments, dict):
            raise _invalid(f"{where}.calls[{index}].arguments must be an object")
        calls.append((call["name"], arguments))
    return tuple(calls)


def _invalid(detail: str) -> ProviderError:
    return ProviderError(f"invalid script: {detail}", kind="invalid_script")


class ScriptedProvider:
    name = "scripted"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        if request.run_input.lstrip().startswith(SCRIPT_PREFIX):
            turns = parse_script(request.run_input.lstrip()[len(SCRIPT_PREFIX):])
            turn = turns[request.turn - 1] if request.turn <= len(turns) else ScriptTurn(text="(end of script)")
        else:
            turn = _demo_turn(request.messages)
        async for event in _play(turn, request):
            yield event


async def _play(turn: ScriptTurn, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
    if turn.error is not None:
        raise ProviderError(f"model error: {turn.error}", kind="scripted_error")
    text = " ".join(f"[{m.role}] {m.text}" for m in request.messages) if turn.echo else turn.text
    words = text.split(" ") if text else []
    words += [_filler(i, turn.markdown) for i in range(turn.words)]
    delay = turn.delay_ms / 1000
    emitted = []
    for index, word in enumerate(words):
        if delay:
            await asyncio.sleep(delay)
        elif index % 64 == 0:
            await asyncio.sleep(0)  # a zero-delay script still lets a stop (and everyone else) in
        piece = word if index == 0 else " " + word
        emitted.append(piece)
        yield TextDelta(piece)
    for index, (name, arguments) in enumerate(turn.calls):
        yield ToolCall(call_id=f"call_t{request.turn}_{index}", name=name, arguments=arguments)
    prompt = "".join(m.text for m in request.messages)
    yield Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens("".join(emitted)), estimated=True)
    yield Finish("tool_calls" if turn.calls else "stop")


def _filler(index: int, markdown: bool) -> str:
    """The index-th filler word; as Markdown, each 7th bold, each 11th code, a new paragraph every 40 (the
    same words either way, so word counts compare)."""
    word = FILLER[index % len(FILLER)]
    if markdown:
        word = f"**{word}**" if index % 7 == 3 else f"`{word}`" if index % 11 == 5 else word
        word = f"\n\n{word}" if index and index % 40 == 0 else word
    return word


_ARITHMETIC = re.compile(r"[\d\s+\-*/%().]+")
_TIME = re.compile(r"\b(time|clock|date)\b", re.IGNORECASE)


def _arithmetic_in(text: str) -> str | None:
    """The longest run of arithmetic in a message ("what is (3 + 4) * 2?" → "(3 + 4) * 2"), if any."""
    candidates = []
    for match in _ARITHMETIC.finditer(text):
        candidate = match.group(0).strip().rstrip(".")
        while candidate.count("(") > candidate.count(")") and candidate.startswith("("):
            candidate = candidate[1:].strip()
        while candidate.count(")") > candidate.count("(") and candidate.endswith(")"):
            candidate = candidate[:-1].strip()
        if re.search(r"\d", candidate) and re.search(r"\d\s*[-+*/%]+\s*[-(]*\s*\d", candidate):
            candidates.append(candidate)
    return max(candidates, key=len) if candidates else None


def _demo_turn(messages: tuple[ModelMessage, ...]) -> ScriptTurn:
    last = messages[-1] if messages else ModelMessage(role="user", text="")
    if last.role == "tool":
        if last.name == "clock":
            return ScriptTurn(text=f"The clock says {last.text}.", delay_ms=25)
        if last.name == "calculator":
            return ScriptTurn(text=f"The answer is {last.text}.", delay_ms=25)
        return ScriptTurn(text=f"The tool said: {last.text}", delay_ms=25)
    text = last.text
    if _TIME.search(text):
        return ScriptTurn(text="Let me look at the clock.", delay_ms=25, calls=(("clock", {}),))
    expression = _arithmetic_in(text)
    if expression:
        return ScriptTurn(text="Let me work that out.", delay_ms=25, calls=(("calculator", {"expression": expression}),))
    return ScriptTurn(
        text=(
            "Hello! I am the scripted demo model, so I cannot really think, but I can stream, call tools and be "
            "stopped. Ask me for the time or a sum such as 12 * 7, or start a message with script: and a JSON "
            "script to drive me."
        ),
        delay_ms=25,
    )
