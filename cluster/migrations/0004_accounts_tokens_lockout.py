"""Accounts, hashed API tokens and lockouts.

- The audit log gets the action "lockout" (cluster.lockout).
- Administrators get the permissions on users (the admin's Users, which writes
  through cluster.services); support may view them.
- DRF's tokens, kept in plaintext, are carried over to knox as digests, so the
  keys clients already hold keep working, and the plaintext table is dropped.
"""

import datetime

from django.contrib.auth.management import create_permissions
from django.db import migrations, models
from django.utils import timezone

USER_PERMISSIONS = ["add_user", "change_user", "delete_user", "view_user"]


def grant_account_permissions(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    user_perms = Permission.objects.filter(
        content_type__app_label="auth", codename__in=USER_PERMISSIONS
    )
    administrator, _ = Group.objects.get_or_create(name="administrator")
    administrator.permissions.add(*user_perms)
    support, _ = Group.objects.get_or_create(name="support")
    support.permissions.add(*user_perms.filter(codename="view_user"))


def revoke_account_permissions(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    for group in apps.get_model("auth", "Group").objects.filter(
        name__in=["administrator", "support"]
    ):
        group.permissions.remove(
            *Permission.objects.filter(
                content_type__app_label="auth", codename__in=USER_PERMISSIONS
            )
        )


def carry_over_drf_tokens(apps, schema_editor):
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return  # a database made after DRF's tokens were gone
    AuthToken = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        digest = hash_token(key)
        AuthToken(digest=digest, token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id).save()
        if timezone.is_naive(created):  # SQLite's cursor: UTC without a zone
            created = timezone.make_aware(created, datetime.UTC)
        AuthToken.objects.filter(digest=digest).update(created=created)
    schema_editor.execute("DROP TABLE authtoken_token")
    # Their permissions (which administrators had) go with the app.
    apps.get_model("contenttypes", "ContentType").objects.filter(app_label="authtoken").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("cluster", "0003_transition_reasons_of_the_engine"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditentry",
            name="action",
            field=models.CharField(
                choices=[
                    ("create", "Created"),
                    ("update", "Updated"),
                    ("delete", "Deleted"),
                    ("lockout", "Locked out"),
                ],
                max_length=16,
            ),
        ),
        migrations.RunPython(grant_account_permissions, revoke_account_permissions),
        migrations.RunPython(carry_over_drf_tokens, migrations.RunPython.noop),
    ]
