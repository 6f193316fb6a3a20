"""Create the two roles as groups with their permissions.

Administrators get every permission on the cluster's models; support gets
the view permissions only (and so a read-only admin). (API tokens were DRF's
here once; 0004 moved them to knox, whose admin asks the role instead.)
Permissions are normally created after all migrations ran, so they are
created here first.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations



def create_roles(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    cluster_perms = Permission.objects.filter(content_type__app_label="cluster")
    administrator, _ = Group.objects.get_or_create(name="administrator")
    administrator.permissions.add(*cluster_perms)
    support, _ = Group.objects.get_or_create(name="support")
    support.permissions.add(*cluster_perms.filter(codename__startswith="view_"))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["administrator", "support"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("cluster", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
