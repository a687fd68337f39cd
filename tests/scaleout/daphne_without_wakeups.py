"""Fault injection for the scale-out tests: a Daphne web process whose executor wake-ups are all lost.

`python -m tests.scaleout.daphne_without_wakeups <daphne args>`: every `run.start` / `run.wake` /
`run.stop` message this process would send to a worker is dropped, so whatever still works through it
works through the database alone.
"""

import django

django.setup()

from daphne.cli import CommandLineInterface  # noqa: E402

from orchestrator import wakeups  # noqa: E402


async def _dropped(kind, run_id, channel=""):
    """The message is lost on the way."""


wakeups.send_wakeup = _dropped

if __name__ == "__main__":
    CommandLineInterface.entrypoint()
