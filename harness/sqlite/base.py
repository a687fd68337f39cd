"""Django's SQLite backend, with this process's write transactions queued on a lock instead of SQLite's
busy handler.

SQLite has one writer at a time. A connection that finds the write lock taken does not wait for its
release: the busy handler sleeps 1, 2, 5, 10, 15, 20 … ms and tries again, so a wait of 3 ms costs 8. In
the embedded `serve` process every writer lives in this process (the engine's database thread and the
request threads), so `BEGIN IMMEDIATE` first takes a process-wide lock and a waiting writer starts the
moment the previous one commits. SQLite's own locking (and busy_timeout) still guards against other
processes (`manage.py` commands) and single autocommit statements.
"""

from __future__ import annotations

import logging
import threading

from django.db.backends.sqlite3 import base

logger = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 20.0  # as the connection's busy_timeout

# Reentrant: one thread may hold two connections' transactions (never in practice, but never a deadlock).
_writers = threading.RLock()


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_write_lock = False

    def _start_transaction_under_autocommit(self) -> None:
        # Bounded like busy_timeout: past it, go ahead and let SQLite's own locking decide (a transaction
        # held open that long is a bug; waiting forever on it would hide that as a hang).
        acquired = _writers.acquire(timeout=LOCK_WAIT_SECONDS)
        if not acquired:
            logger.warning("a write transaction waited %.0f s for this process's writer lock", LOCK_WAIT_SECONDS)
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            if acquired:
                _writers.release()
            raise
        self._holds_write_lock = acquired

    def _release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            _writers.release()

    def _commit(self) -> None:
        try:
            super()._commit()
        finally:
            self._release_write_lock()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._release_write_lock()
