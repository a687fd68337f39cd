"""Keeping each client's copy of streaming text contiguous.

The engine publishes `message.delta {message_id, offset, text}` every ~50 ms but checkpoints text to the
database only every ~250 ms. A client that connects mid-stream gets a snapshot (the checkpoint) and then
only the deltas published after it joined: there can be a hole between the two. Each connection keeps a
`StreamTracker`; it passes contiguous text straight through, drops what the client already holds, and fills
a hole from the checkpoint as soon as the checkpoint reaches the delta (it always does within one
checkpoint interval). So every client — portal tab or JSON program — receives contiguous text, never a
doubled or missing word.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator.selectors import checkpointed_text

# A delta this client cannot append yet: the text before it must first come from the checkpoint.
GAP = object()


class StreamTracker:
    def __init__(self) -> None:
        self.held: dict[int, int] = {}  # message id → characters the client holds

    def hold(self, message_id: int, length: int) -> None:
        self.held[message_id] = length

    def hold_all(self, messages: Iterable[tuple[int, str]]) -> None:
        for message_id, text in messages:
            self.held[message_id] = len(text)

    def knows(self, message_id: int) -> bool:
        return message_id in self.held

    def append(self, event: dict[str, Any]) -> tuple[int, str] | None | object:
        """Without the database: (offset, text) to append, None if nothing is new, or GAP."""
        message_id, offset, text = event["message_id"], event["offset"], event["text"]
        held = self.held.get(message_id, 0)  # a message created after the snapshot starts empty
        if offset > held:
            return GAP
        fresh = text[held - offset:]
        if not fresh:
            return None
        self.held[message_id] = held + len(fresh)
        return held, fresh

    def fill_gap(self, event: dict[str, Any]) -> tuple[int, str] | None:
        """On the database thread: the hole plus this delta, once the checkpoint covers the hole."""
        message_id, offset, text = event["message_id"], event["offset"], event["text"]
        held = self.held.get(message_id, 0)
        saved = checkpointed_text(message_id)
        if len(saved) < offset:
            return None  # not checkpointed yet; a later delta fills it (message.completed at the latest)
        self.held[message_id] = offset + len(text)
        return held, saved[held:offset] + text
