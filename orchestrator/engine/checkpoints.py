"""Streaming text reaches the database every HARNESS_CHECKPOINT_SECONDS — for all of a process's streams in
one database round.

A checkpoint is what a crash cannot take back: the text a user saw before a worker died is kept and the
model is asked again (assistant_streaming). Writing each stream's checkpoint on its own cost one trip to the
database thread per stream per interval, which made checkpoints the main load of a worker streaming many
runs at once; here one flush writes every stream whose text grew, with one statement executed for many
rows. A row is written only while its run's lease is ours (the condition is part of the UPDATE), so an
executor that lost its run never overwrites its successor's text; the pool's watcher tells it to stop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from ..models import Message, Run
from .dbthread import engine_db

logger = logging.getLogger(__name__)


class StreamingText(Protocol):
    message_id: int
    length: int  # characters so far; grows only

    @property
    def text(self) -> str: ...


class StreamCheckpoints:
    def __init__(self, executor_id: str) -> None:
        self.executor_id = executor_id
        self._streams: dict[int, StreamingText] = {}
        self._saved: dict[int, int] = {}  # message id → length last written
        self._task: asyncio.Task | None = None

    @property
    def active(self) -> int:
        """How many streams this process has open (also the load that sizes delta coalescing)."""
        return len(self._streams)

    def register(self, stream: StreamingText) -> None:
        self._streams[stream.message_id] = stream
        self._saved.setdefault(stream.message_id, 0)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_forever(), name="checkpoints")

    def unregister(self, stream: StreamingText) -> None:
        """The stream ended: its final text is written with its closing transition, not here."""
        self._streams.pop(stream.message_id, None)
        self._saved.pop(stream.message_id, None)

    async def _flush_forever(self) -> None:
        while self._streams:
            await asyncio.sleep(settings.HARNESS_CHECKPOINT_SECONDS)
            try:
                await engine_db(self.flush)()
            except DatabaseError:
                logger.warning("could not checkpoint streaming text", exc_info=True)
            except Exception:
                logger.exception("checkpoint flush failed; it keeps flushing")

    def flush(self) -> int:
        """On the database thread: write every stream whose text grew since its last checkpoint."""
        grown = [s for s in list(self._streams.values()) if s.length > self._saved.get(s.message_id, s.length)]
        if not grown:
            return 0
        # Read each text here, at write time: it is the newest, and a stream that ended meanwhile has its
        # final text, so this write can never shorten what the closing transition wrote.
        rows = [(s.text, s.message_id) for s in grown]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        message, run = Message._meta.db_table, Run._meta.db_table
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {message} SET text = %s, updated_at = %s WHERE id = %s AND run_id IN "
                f"(SELECT id FROM {run} WHERE executor_id = %s)",
                [(text, now, message_id, self.executor_id) for text, message_id in rows],
            )
        for (text, message_id) in rows:
            if message_id in self._saved:
                self._saved[message_id] = len(text)
        return len(rows)
