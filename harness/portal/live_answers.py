"""The answers one portal tab is watching stream, rendered as Markdown at a bounded rate.

Deltas arrive ~20 times a second per answer; rendering on each would cost a parse of the open block every
50 ms in every tab. Instead fresh text is rendered at once if the answer has not been rendered for
`RENDER_INTERVAL_S` (so the first words show immediately), and otherwise by a timer when that interval is up:
what a reader sees lags the raw text by at most the interval. Should rendering get slow (a huge open block,
say a long code fence), the interval stretches so that rendering takes at most `MAX_RENDER_SHARE` of the time.
And rendering for every tab of the process together may take at most `PROCESS_RENDER_SHARE` of its (one) event
loop: past that, with hundreds of answers streaming into open tabs at once, every interval stretches alike, so
the tabs' Markdown gets fresher less often but the raw streams, stops and everything else keep their pace.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .fragments import answer_delta_html
from .markdown import MarkdownStream

RENDER_INTERVAL_S = 0.2
MAX_RENDER_SHARE = 0.05
PROCESS_RENDER_SHARE = 0.1
LOAD_HALF_LIFE_S = 1.0


class _RenderLoad:
    """The share of this process's time spent rendering answers, smoothed (an exponentially decaying sum of
    render seconds, per second). One per process: every tab's renders count."""

    def __init__(self) -> None:
        self.share = 0.0
        self.at = time.monotonic()

    def add(self, seconds: float, now: float) -> None:
        self.share = self.share * 0.5 ** ((now - self.at) / LOAD_HALF_LIFE_S) + seconds * math.log(2) / LOAD_HALF_LIFE_S
        self.at = now

    def stretch(self) -> float:
        """How much longer every interval must be for rendering to keep within its share (1: not at all)."""
        return max(1.0, self.share / PROCESS_RENDER_SHARE)


LOAD = _RenderLoad()


@dataclass
class _Answer:
    stream: MarkdownStream = field(default_factory=MarkdownStream)
    pending: str = ""
    rendered_at: float = float("-inf")
    interval: float = RENDER_INTERVAL_S
    timer: asyncio.TimerHandle | None = None


class LiveAnswers:
    def __init__(self, send: Callable[[str], Awaitable[None]]) -> None:
        self._send = send
        self._answers: dict[int, _Answer] = {}
        self._sending: set[asyncio.Task] = set()

    def watch(self, streams: dict[int, MarkdownStream]) -> None:
        """Takes over the renderers of the answers a snapshot showed mid-stream (and forgets any others)."""
        self.close()
        self._answers = {message_id: _Answer(stream=stream) for message_id, stream in streams.items()}

    def add(self, message_id: int, text: str) -> str:
        """Fresh text of an answer: the fragment to send now, or "" if a timer will send it."""
        answer = self._answers.setdefault(message_id, _Answer())
        answer.pending += text
        wait = answer.rendered_at + answer.interval * LOAD.stretch() - time.monotonic()
        if wait <= 0:
            return self._render(message_id, answer)
        if answer.timer is None:
            answer.timer = asyncio.get_running_loop().call_later(wait, self._due, message_id)
        return ""

    def finish(self, message_id: int) -> None:
        """The answer is complete (its whole message is re-rendered): nothing more to send for it."""
        answer = self._answers.pop(message_id, None)
        if answer is not None and answer.timer is not None:
            answer.timer.cancel()

    def close(self) -> None:
        for message_id in list(self._answers):
            self.finish(message_id)

    def _render(self, message_id: int, answer: _Answer) -> str:
        if answer.timer is not None:
            answer.timer.cancel()
            answer.timer = None
        started = time.monotonic()
        finished, tail = answer.stream.push(answer.pending)
        answer.pending = ""
        answer.rendered_at = time.monotonic()
        took = answer.rendered_at - started
        LOAD.add(took, answer.rendered_at)
        answer.interval = max(RENDER_INTERVAL_S, took / MAX_RENDER_SHARE)
        return answer_delta_html(message_id, finished, tail)

    def _due(self, message_id: int) -> None:
        answer = self._answers.get(message_id)
        if answer is None:
            return
        answer.timer = None
        if not answer.pending:
            return
        task = asyncio.get_running_loop().create_task(self._send(self._render(message_id, answer)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
