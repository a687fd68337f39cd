"""Executor identity is `executor_id` everywhere ("owner" is a user, on Session only)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("orchestrator", "0003_model_choice")]

    operations = [
        migrations.RenameField(model_name="run", old_name="lease_owner", new_name="executor_id"),
        migrations.RenameField(model_name="workerheartbeat", old_name="owner", new_name="executor_id"),
    ]
