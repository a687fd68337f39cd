"""A tab's streaming answers rendered at a bounded rate (harness/portal/live_answers.py)."""

from __future__ import annotations

import asyncio

import pytest

from harness.portal import live_answers
from harness.portal.live_answers import LiveAnswers
from harness.portal.markdown import MarkdownStream


class Sent:
    def __init__(self) -> None:
        self.fragments: list[str] = []
        self.arrived = asyncio.Event()

    async def __call__(self, html: str) -> None:
        self.fragments.append(html)
        self.arrived.set()


async def test_the_first_words_show_at_once_and_later_ones_within_the_interval():
    sent = Sent()
    answers = LiveAnswers(sent)
    assert answers.add(7, "Hello") == '<div id="msg-7-tail" hx-swap-oob="innerHTML"><p>Hello</p>\n</div>'
    assert answers.add(7, " **world**") == ""  # within the interval: held for the timer …
    assert answers.add(7, "!") == ""
    await asyncio.wait_for(sent.arrived.wait(), timeout=5)  # … which sends both pieces, rendered, in one go
    assert sent.fragments == ['<div id="msg-7-tail" hx-swap-oob="innerHTML"><p>Hello <strong>world</strong>!</p>\n</div>']
    answers.close()


async def test_a_finished_answer_sends_nothing_more(monkeypatch):
    monkeypatch.setattr(live_answers, "RENDER_INTERVAL_S", 0.05)
    sent = Sent()
    answers = LiveAnswers(sent)
    answers.add(1, "a")
    assert answers.add(1, "b") == ""  # a timer is set …
    answers.finish(1)  # … and cancelled: the whole message is rendered by the caller
    answers.add(2, "x")
    assert answers.add(2, "y") == ""
    await asyncio.wait_for(sent.arrived.wait(), timeout=5)  # a later timer (answer 2's) has fired …
    assert sent.fragments == ['<div id="msg-2-tail" hx-swap-oob="innerHTML"><p>xy</p>\n</div>']  # … not 1's
    answers.close()


async def test_a_snapshot_hands_over_its_renderers():
    stream = MarkdownStream()
    stream.push("First.\n\nSec")
    answers = LiveAnswers(Sent())
    answers.watch({3: stream})
    # It continues where the snapshot's render stopped ("First." is on the page already), not from scratch.
    assert answers.add(3, "ond.") == '<div id="msg-3-tail" hx-swap-oob="innerHTML"><p>Second.</p>\n</div>'
    answers.close()


def test_rendering_for_every_tab_together_keeps_within_its_share_of_the_process():
    from harness.portal.live_answers import PROCESS_RENDER_SHARE, _RenderLoad

    load = _RenderLoad()
    load.at = 0.0
    assert load.stretch() == 1.0  # idle: intervals as configured
    for tick in range(1, 201):  # 5 s of renders taking 30 % of the time (e.g. hundreds of streaming tabs)
        load.add(0.3 * 0.025, tick * 0.025)
    assert load.stretch() == pytest.approx(0.3 / PROCESS_RENDER_SHARE, rel=0.1)  # every interval ~3× longer
    load.add(0.0, 5.0 + 10.0)  # ten quiet seconds later
    assert load.stretch() == 1.0
