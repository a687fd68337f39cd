"""Who is viewing a session right now, for its page ("Here now: alice, bob").

Every open session page (a portal socket) is one *presence*: (its channel name, its user's name). The truth is
spread over the sockets themselves and kept in step by channel-layer messages, so it works the same on the
in-memory layer and on Redis with several web processes, and needs no table and no Redis keys of its own:

- a socket joins the session's presence group (`presence.<session id>`, portal sockets only) and announces
  itself there with `ask`: every other socket records it and answers it directly with its own `here`;
- it announces itself again every `BEAT_SECONDS` (re-joining the group too: channels-redis expires members);
  a presence not heard from for `TTL_SECONDS` is dropped (a process that died without saying goodbye);
- closing, it says `gone`.

Each socket keeps its own `Presence`: channel → (user, last heard). A user is present while any of their
tabs is, so several tabs count once and closing one of them keeps the user there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

BEAT_SECONDS = 20.0
TTL_SECONDS = 3 * BEAT_SECONDS
HERE = "presence.here"
GONE = "presence.gone"


def presence_group(session_id) -> str:
    return f"presence.{session_id}"


def here_message(*, channel: str, user: str, ask: bool) -> dict:
    return {"type": HERE, "channel": channel, "user": user, "ask": ask}


def gone_message(*, channel: str) -> dict:
    return {"type": GONE, "channel": channel}


@dataclass
class Presence:
    """One socket's view of who else is on the page. `clock`: monotonic seconds (a test's own clock)."""

    channel: str
    user: str
    clock: Callable[[], float] = time.monotonic
    others: dict[str, tuple[str, float]] = field(default_factory=dict)

    def users(self) -> list[str]:
        """Everyone on the page, this socket's user included, sorted by name (each once however many tabs)."""
        return sorted({self.user, *(user for user, _ in self.others.values())})

    def here(self, channel: str, user: str) -> bool:
        """A socket said it is here; True if the set of users changed."""
        if channel == self.channel:
            return False
        before = self.users()
        self.others[channel] = (user, self.clock())
        return self.users() != before

    def gone(self, channel: str) -> bool:
        before = self.users()
        self.others.pop(channel, None)
        return self.users() != before

    def prune(self) -> bool:
        """Drop presences not heard from for `TTL_SECONDS`; True if the set of users changed."""
        before = self.users()
        oldest = self.clock() - TTL_SECONDS
        self.others = {c: (u, seen) for c, (u, seen) in self.others.items() if seen >= oldest}
        return self.users() != before
