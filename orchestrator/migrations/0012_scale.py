"""Search at scale: GIN indexes for PostgreSQL's full-text search of session titles and message text
(`orchestrator/selectors_sharing.py:matching`, whose expressions these are to the letter).

PostgreSQL only, so they live outside the models' state: SQLite has no GIN (its search is a substring match),
and an index in the state would be re-created by every later table rebuild on SQLite."""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models.functions import Left

INDEXES = {
    "session": GinIndex(SearchVector("title", config="simple"), name="session_title_search"),
    # The first 65,536 characters of each message: a tsvector must stay under 1 MB, and a tool's output may
    # be a megabyte of text. Not partial (superseded messages are few): the planner, and the search's choice
    # of plan, use the statistics ANALYZE keeps of an expression index's words only for a non-partial one.
    "message": GinIndex(SearchVector(Left("text", 65536), config="simple"), name="message_text_search"),
}


def add_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for model, index in INDEXES.items():
            schema_editor.add_index(apps.get_model("orchestrator", model), index)


def remove_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for model, index in INDEXES.items():
            schema_editor.remove_index(apps.get_model("orchestrator", model), index)


class Migration(migrations.Migration):

    dependencies = [
        ("orchestrator", "0011_files"),
    ]

    operations = [
        migrations.RunPython(add_indexes, remove_indexes),
    ]
