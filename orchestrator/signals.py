"""Access taken away outside the sessions' own services — a user deactivated or deleted, a user leaving a group
(either side of `User.groups`), a group deleted — closes the sockets it leaves without a role, at once
(`services.members.access_changed_*`; the sockets re-check and close 4403)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_save, pre_delete

from .services.members import access_changed_for_groups, access_changed_for_users


def _user_saved(sender, instance, created, **kwargs) -> None:
    if not created and not instance.is_active:
        access_changed_for_users(user_ids=[instance.pk])


def _user_deleted(sender, instance, **kwargs) -> None:
    access_changed_for_users(user_ids=[instance.pk])  # read now, announced once the deletion commits


def _groups_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    if action == "pre_clear":  # the groups are read before they are gone, announced after
        instance._cleared_groups = [instance.pk] if reverse else list(instance.groups.values_list("pk", flat=True))
    elif action == "post_clear":
        access_changed_for_groups(group_ids=getattr(instance, "_cleared_groups", []))
    elif action == "post_remove":
        access_changed_for_groups(group_ids=[instance.pk] if reverse else list(pk_set or ()))


def _group_deleted(sender, instance, **kwargs) -> None:
    access_changed_for_groups(group_ids=[instance.pk])  # announced after the commit, once the grants are gone


def connect() -> None:
    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="orchestrator.access.user_saved")
    pre_delete.connect(_user_deleted, sender=user_model, dispatch_uid="orchestrator.access.user_deleted")
    m2m_changed.connect(_groups_changed, sender=user_model.groups.through,
                        dispatch_uid="orchestrator.access.groups_changed")
    pre_delete.connect(_group_deleted, sender=Group, dispatch_uid="orchestrator.access.group_deleted")
