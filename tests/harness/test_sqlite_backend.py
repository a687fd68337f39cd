"""harness.sqlite: write transactions of one process queue on a lock (no busy-handler sleeps)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from harness.sqlite.base import _writers
from orchestrator.models import Session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _on_the_sqlite_backend():
    # The PostgreSQL run of the suite leaves this module out (Makefile): PostgreSQL has row locks.
    assert connection.settings_dict["ENGINE"] == "harness.sqlite"


def lock_free_for_another_thread() -> bool:
    result = []

    def probe() -> None:
        got = _writers.acquire(blocking=False)
        result.append(got)
        if got:
            _writers.release()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(5)
    return result == [True]


def test_the_lock_is_held_for_exactly_the_transaction(user):
    assert lock_free_for_another_thread()
    with transaction.atomic():
        Session.objects.create(owner=user, title="held")
        assert not lock_free_for_another_thread()  # another writer would wait for our commit
        with transaction.atomic():  # a savepoint takes nothing more
            Session.objects.create(owner=user, title="nested")
    assert lock_free_for_another_thread()  # released by the commit


def test_a_rolled_back_transaction_releases_the_lock(user):
    with pytest.raises(RuntimeError), transaction.atomic():
        Session.objects.create(owner=user, title="rolled back")
        raise RuntimeError("boom")
    assert lock_free_for_another_thread()
    assert not Session.objects.filter(title="rolled back").exists()


def test_a_second_writer_proceeds_as_soon_as_the_first_commits(user):
    inside, second_done = threading.Event(), threading.Event()

    def second_writer() -> None:
        inside.wait(5)
        with transaction.atomic():
            Session.objects.create(owner=user, title="second")
        connection.close()
        second_done.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    with transaction.atomic():
        Session.objects.create(owner=user, title="first")
        inside.set()  # the second writer now queues on the lock (it would fail or spin on SQLite's lock)
        assert not lock_free_for_another_thread()
    assert second_done.wait(5)
    thread.join(5)
    assert set(Session.objects.values_list("title", flat=True)) == {"first", "second"}
