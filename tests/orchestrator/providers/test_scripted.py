"""The embedded scripted model: script parsing, what each kind of turn streams, the demo agent, cancellation."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from orchestrator.providers.base import (
    Finish,
    ModelMessage,
    ModelRequest,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolCallRequest,
    Usage,
    estimate_tokens,
)
from orchestrator.providers.scripted import MAX_DELAY_MS, MAX_WORDS, ScriptedProvider, ScriptTurn, parse_script


def script(*turns) -> str:
    return "script:" + json.dumps({"turns": list(turns)})


def request(text: str, *, turn: int = 1, messages: tuple[ModelMessage, ...] | None = None,
            run_input: str | None = None) -> ModelRequest:
    return ModelRequest(
        messages=messages if messages is not None else (ModelMessage(role="user", text=text),),
        tools=(),
        run_input=text if run_input is None else run_input,
        turn=turn,
    )


async def collect(req: ModelRequest) -> list:
    return [event async for event in ScriptedProvider().stream(req)]


def text_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def calls_of(events) -> list[ToolCall]:
    return [e for e in events if isinstance(e, ToolCall)]


# --- parse_script ---


def test_parse_a_valid_script():
    turns = parse_script(json.dumps({"turns": [
        {"text": "hello there", "delay_ms": 20},
        {"words": 3, "delay_ms": 5.5},
        {"text": "calling", "calls": [{"name": "clock"}, {"name": "calculator", "arguments": {"expression": "1+1"}}]},
        {"error": "boom"},
        {},
    ]}))
    assert turns == [
        ScriptTurn(text="hello there", delay_ms=20.0),
        ScriptTurn(words=3, delay_ms=5.5),
        ScriptTurn(text="calling", calls=(("clock", {}), ("calculator", {"expression": "1+1"}))),
        ScriptTurn(error="boom"),
        ScriptTurn(),
    ]


def test_parse_boundaries():
    turns = parse_script(json.dumps({"turns": [{"words": MAX_WORDS, "delay_ms": MAX_DELAY_MS}, {"words": 0}]}))
    assert turns[0].words == MAX_WORDS and turns[0].delay_ms == MAX_DELAY_MS
    assert parse_script('{"turns": []}') == []


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("not json", "not valid JSON (Expecting value at line 1 column 1)"),
        ('{"turns": [', "not valid JSON"),
        ("[]", 'expected an object with a "turns" list'),
        ("{}", 'expected an object with a "turns" list'),
        ('{"turns": {}}', 'expected an object with a "turns" list'),
        ('{"turns": "text"}', 'expected an object with a "turns" list'),
        ('{"turns": [1]}', "turns[0] must be an object"),
        ('{"turns": [{}, "hi"]}', "turns[1] must be an object"),
        ('{"turns": [{"txt": "x", "wait": 1}]}', "turns[0] has unknown keys: txt, wait"),
        ('{"turns": [{"text": 1}]}', "turns[0].text must be a string"),
        ('{"turns": [{"text": null}]}', "turns[0].text must be a string"),
        ('{"turns": [{"words": "3"}]}', f"turns[0].words must be an integer from 0 to {MAX_WORDS}"),
        ('{"turns": [{"words": true}]}', f"turns[0].words must be an integer from 0 to {MAX_WORDS}"),
        ('{"turns": [{"words": 2.5}]}', f"turns[0].words must be an integer from 0 to {MAX_WORDS}"),
        ('{"turns": [{"words": -1}]}', f"turns[0].words must be an integer from 0 to {MAX_WORDS}"),
        (f'{{"turns": [{{"words": {MAX_WORDS + 1}}}]}}', f"turns[0].words must be an integer from 0 to {MAX_WORDS}"),
        ('{"turns": [{"delay_ms": -1}]}', f"turns[0].delay_ms must be a number from 0 to {MAX_DELAY_MS}"),
        ('{"turns": [{"delay_ms": -0.5}]}', f"turns[0].delay_ms must be a number from 0 to {MAX_DELAY_MS}"),
        ('{"turns": [{"delay_ms": "5"}]}', f"turns[0].delay_ms must be a number from 0 to {MAX_DELAY_MS}"),
        ('{"turns": [{"delay_ms": false}]}', f"turns[0].delay_ms must be a number from 0 to {MAX_DELAY_MS}"),
        (f'{{"turns": [{{"delay_ms": {MAX_DELAY_MS + 1}}}]}}',
         f"turns[0].delay_ms must be a number from 0 to {MAX_DELAY_MS}"),
        ('{"turns": [{"error": 1}]}', "turns[0].error must be a string"),
        ('{"turns": [{"echo": 1}]}', "turns[0].echo must be true or false"),
        ('{"turns": [{"calls": {"name": "clock"}}]}', "turns[0].calls must be a list"),
        ('{"turns": [{"calls": [{}]}]}', "turns[0].calls[0] needs a non-empty string name"),
        ('{"turns": [{"calls": [{"name": ""}]}]}', "turns[0].calls[0] needs a non-empty string name"),
        ('{"turns": [{"calls": [{"name": 3}]}]}', "turns[0].calls[0] needs a non-empty string name"),
        ('{"turns": [{"calls": ["clock"]}]}', "turns[0].calls[0] needs a non-empty string name"),
        ('{"turns": [{}, {"calls": [{"name": "clock"}, {"arguments": {}}]}]}',
         "turns[1].calls[1] needs a non-empty string name"),
        ('{"turns": [{"calls": [{"name": "clock", "arguments": [1]}]}]}',
         "turns[0].calls[0].arguments must be an object"),
        ('{"turns": [{"calls": [{"name": "clock", "arguments": "x=1"}]}]}',
         "turns[0].calls[0].arguments must be an object"),
    ],
)
def test_invalid_scripts(raw, detail):
    with pytest.raises(ProviderError) as caught:
        parse_script(raw)
    message = str(caught.value)
    assert message.startswith("invalid script: ")
    assert detail in message
    assert caught.value.message == message
    assert caught.value.kind == "invalid_script"
    # Plain English: no exception class names or Python reprs leak into what the user is shown.
    assert not re.search(r"Traceback|Error\b|Exception|<class", message)


async def test_an_echo_turn_answers_with_the_models_input():
    history = (ModelMessage(role="user", text="first question"), ModelMessage(role="assistant", text="an answer"),
               ModelMessage(role="user", text="x"))
    events = await collect(request("x", messages=history, run_input=script({"echo": True})))
    assert text_of(events) == "[user] first question [assistant] an answer [user] x"
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"


async def test_an_invalid_script_fails_the_model_call():
    with pytest.raises(ProviderError, match=r"^invalid script: turns\[0\] has unknown keys: bogus$"):
        await collect(request("script:" + json.dumps({"turns": [{"bogus": 1}]})))


# --- scripted turns ---


async def test_text_turn_streams_words_then_usage_then_finish():
    text = "The quick  brown fox jumps"  # a double space survives the round trip
    events = await collect(request(script({"text": text})))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == len(text.split(" ")) > 1
    assert "".join(d.text for d in deltas) == text
    assert events[: len(deltas)] == deltas  # text first
    assert isinstance(events[-2], Usage) and events[-1] == Finish("stop")
    assert len(events) == len(deltas) + 2
    usage = events[-2]
    assert usage.estimated is True
    assert usage.output_tokens == estimate_tokens(text)
    assert usage.input_tokens == estimate_tokens(script({"text": text}))


async def test_text_turn_with_delay_still_streams_everything():
    events = await collect(request(script({"text": "one two three", "delay_ms": 1})))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one", " two", " three"]
    assert events[-1] == Finish("stop")


async def test_words_turn_yields_n_words():
    events = await collect(request(script({"words": 20})))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 20
    assert text_of(events).split(" ") == (["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing",
                                            "elit"] * 3)[:20]
    assert events[-1] == Finish("stop")


async def test_text_and_words_combine():
    events = await collect(request(script({"text": "Hi there", "words": 2})))
    assert text_of(events) == "Hi there lorem ipsum"


async def test_empty_turn_yields_only_usage_and_finish():
    events = await collect(request(script({})))
    assert len(events) == 2 and isinstance(events[0], Usage) and events[1] == Finish("stop")
    assert events[0].output_tokens == 0


async def test_calls_turn_yields_tool_calls_with_ids_unique_per_turn():
    raw = script(
        {"text": "first"},
        {"text": "calling", "calls": [
            {"name": "clock"},
            {"name": "calculator", "arguments": {"expression": "2+2"}},
            {"name": "clock"},
        ]},
    )
    events = await collect(request(raw, turn=2))
    calls = calls_of(events)
    assert [(c.name, c.arguments) for c in calls] == [
        ("clock", {}), ("calculator", {"expression": "2+2"}), ("clock", {}),
    ]
    assert len({c.call_id for c in calls}) == 3
    assert all(c.call_id for c in calls)
    # Text, then the calls, then usage and a tool_calls finish.
    kinds = [type(e) for e in events]
    assert kinds == [TextDelta, ToolCall, ToolCall, ToolCall, Usage, Finish]
    assert events[-1] == Finish("tool_calls")
    assert text_of(events) == "calling"


async def test_call_ids_differ_between_turns():
    raw = script({"calls": [{"name": "clock"}]}, {"calls": [{"name": "clock"}]})
    first = calls_of(await collect(request(raw, turn=1)))
    second = calls_of(await collect(request(raw, turn=2)))
    assert first[0].call_id != second[0].call_id


async def test_the_turn_number_picks_the_script_entry():
    raw = script({"text": "one"}, {"text": "two"}, {"text": "three"})
    assert [text_of(await collect(request(raw, turn=n))) for n in (1, 2, 3)] == ["one", "two", "three"]


async def test_error_turn_raises_provider_error():
    raw = script({"text": "fine"}, {"error": "boom"})
    events = []
    with pytest.raises(ProviderError) as caught:
        async for event in ScriptedProvider().stream(request(raw, turn=2)):
            events.append(event)
    assert str(caught.value) == "model error: boom"
    assert caught.value.kind == "scripted_error"
    assert events == []


async def test_turns_beyond_the_script_end_it():
    raw = script({"text": "only turn"})
    for turn in (2, 5):
        events = await collect(request(raw, turn=turn))
        assert text_of(events) == "(end of script)"
        assert calls_of(events) == []
        assert events[-1] == Finish("stop")


async def test_script_prefix_may_follow_whitespace():
    events = await collect(request("  \n" + script({"text": "scripted"})))
    assert text_of(events) == "scripted"


async def test_the_script_comes_from_run_input_not_the_last_message():
    req = request(
        "ignored",
        run_input=script({"text": "from run input"}, {"text": "second"}),
        messages=(ModelMessage(role="user", text="what time is it?"),),
        turn=2,
    )
    assert text_of(await collect(req)) == "second"


# --- the demo agent (no script) ---


@pytest.mark.parametrize("text", ["What time is it?", "which DATE is today", "look at the clock please"])
async def test_demo_asks_for_the_clock(text):
    events = await collect(request(text))
    assert [(c.name, c.arguments) for c in calls_of(events)] == [("clock", {})]
    assert text_of(events) == "Let me look at the clock."
    assert events[-1] == Finish("tool_calls")


async def test_demo_does_not_match_time_inside_words():
    events = await collect(request("sometimes I am in a timeless mood"))
    assert calls_of(events) == []


@pytest.mark.parametrize(
    ("text", "expression"),
    [("what is 12 * 7?", "12 * 7"), ("compute 3+4, please", "3+4"), ("and 10 / 4", "10 / 4"), ("-2 - 5", "-2 - 5")],
)
async def test_demo_asks_the_calculator(text, expression):
    events = await collect(request(text))
    assert [(c.name, c.arguments) for c in calls_of(events)] == [("calculator", {"expression": expression})]
    assert text_of(events) == "Let me work that out."
    assert events[-1] == Finish("tool_calls")


async def test_demo_expression_is_one_the_calculator_accepts():
    from orchestrator.tools.builtin.calculator import evaluate

    (call,) = calls_of(await collect(request("what is 12 * 7?")))
    assert evaluate(call.arguments["expression"]) == 84


@pytest.mark.parametrize(
    ("text", "expression", "value"),
    [
        ("what is (3 + 4) * 2?", "(3 + 4) * 2", 14),
        ("what is 12 * (3 + 4)?", "12 * (3 + 4)", 84),
    ],
)
async def test_demo_expressions_with_parentheses_are_balanced(text, expression, value):
    from orchestrator.tools.builtin.calculator import evaluate

    (call,) = calls_of(await collect(request(text)))
    assert call.arguments == {"expression": expression}
    assert evaluate(call.arguments["expression"]) == value


def _after_tool(name: str, result: str) -> tuple[ModelMessage, ...]:
    return (
        ModelMessage(role="user", text="what is 12 * 7?"),
        ModelMessage(role="assistant", text="Let me work that out.",
                     tool_calls=(ToolCallRequest(call_id="c1", name=name, arguments={}),)),
        ModelMessage(role="tool", text=result, tool_call_id="c1", name=name),
    )


@pytest.mark.parametrize(
    ("name", "result", "reply"),
    [
        ("calculator", "84", "The answer is 84."),
        ("clock", "2024-01-01 12:00:00 UTC", "The clock says 2024-01-01 12:00:00 UTC."),
        ("shell", "exit code 0", "The tool said: exit code 0"),
    ],
)
async def test_demo_replies_with_the_last_tool_result(name, result, reply):
    events = await collect(request("what is 12 * 7?", messages=_after_tool(name, result), turn=2))
    assert text_of(events) == reply
    assert calls_of(events) == []  # it does not call the tool again
    assert events[-1] == Finish("stop")


async def test_demo_greets_otherwise():
    events = await collect(request("hello there"))
    text = text_of(events)
    assert text.startswith("Hello! I am the scripted demo model")
    assert "script:" in text
    assert calls_of(events) == []
    assert len([e for e in events if isinstance(e, TextDelta)]) > 10  # streamed, not one piece
    assert events[-1] == Finish("stop")


# --- cancellation ---


async def test_stream_is_cancellable():
    received: list[str] = []
    some_arrived = asyncio.Event()

    async def consume():
        async for event in ScriptedProvider().stream(request(script({"words": 1000, "delay_ms": 50}))):
            if isinstance(event, TextDelta):
                received.append(event.text)
                if len(received) >= 3:
                    some_arrived.set()
        return "finished"

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(some_arrived.wait(), timeout=10)
    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - cancelled_at < 1  # promptly: well within one more 50 ms delay plus slack
    assert task.cancelled()
    assert 3 <= len(received) < 1000


async def test_markdown_filler_is_the_same_words_as_paragraphs_with_bold_and_code():
    plain = text_of(await collect(request(script({"words": 100}))))
    shaped = text_of(await collect(request(script({"words": 100, "markdown": True}))))
    assert shaped.replace("**", "").replace("`", "").split() == plain.split()  # same words: rates compare
    assert shaped.count("\n\n") == 2 and "**" in shaped and "`" in shaped
    from harness.portal.markdown import render

    html = render(shaped)
    assert html.count("<p>") == 3 and "<strong>" in html and "<code>" in html


def test_markdown_must_be_a_boolean():
    with pytest.raises(ProviderError, match=r"turns\[0\]\.markdown must be true or false"):
        parse_script(json.dumps({"turns": [{"words": 1, "markdown": "yes"}]}))
