"""Health checks (issue 10): the model, and the roles' permissions on it.

Administrators get every permission on health checks (the admin writes through
cluster.services); support may view them.
"""

import cluster.validators
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

CHECK_PERMISSIONS = [
    "add_healthcheck", "change_healthcheck", "delete_healthcheck", "view_healthcheck",
]


def grant_check_permissions(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(
        content_type__app_label="cluster", codename__in=CHECK_PERMISSIONS
    )
    administrator, _ = Group.objects.get_or_create(name="administrator")
    administrator.permissions.add(*perms)
    support, _ = Group.objects.get_or_create(name="support")
    support.permissions.add(*perms.filter(codename="view_healthcheck"))


def revoke_check_permissions(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(
        content_type__app_label="cluster", codename__in=CHECK_PERMISSIONS
    )
    for group in apps.get_model("auth", "Group").objects.filter(
        name__in=["administrator", "support"]
    ):
        group.permissions.remove(*perms)


class Migration(migrations.Migration):

    dependencies = [
        ('cluster', '0006_advbase_zero'),
    ]

    operations = [
        migrations.CreateModel(
            name='HealthCheck',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=40, unique=True, validators=[cluster.validators.validate_check_name])),
                ('kind', models.CharField(choices=[('smtp', 'SMTP (220 banner, EHLO)'), ('tcp', 'TCP connect'), ('http', 'HTTP GET'), ('disk', 'Disk free space'), ('command', 'Command (exit 0)')], max_length=16)),
                ('host', models.CharField(blank=True, max_length=253)),
                ('port', models.PositiveIntegerField(default=0)),
                ('path', models.CharField(blank=True, max_length=1024)),
                ('expect_status', models.PositiveSmallIntegerField(default=200, validators=[cluster.validators.RangeValidator('Expected status', 100, 599)], verbose_name='expected status')),
                ('min_free_percent', models.PositiveSmallIntegerField(default=10, validators=[cluster.validators.RangeValidator('Minimum free percent', 1, 99)], verbose_name='minimum free percent')),
                ('argv', models.JSONField(blank=True, default=list, verbose_name='command')),
                ('starttls', models.BooleanField(default=False, verbose_name='STARTTLS')),
                ('interval_ms', models.PositiveIntegerField(default=2000, validators=[cluster.validators.validate_interval_ms], verbose_name='interval (ms)')),
                ('timeout_ms', models.PositiveIntegerField(default=1000, validators=[cluster.validators.validate_timeout_ms], verbose_name='timeout (ms)')),
                ('rise', models.PositiveSmallIntegerField(default=2, validators=[cluster.validators.RangeValidator('Rise', 1, 10)])),
                ('fall', models.PositiveSmallIntegerField(default=3, validators=[cluster.validators.RangeValidator('Fall', 1, 10)])),
                ('weight', models.PositiveSmallIntegerField(default=240, validators=[cluster.validators.RangeValidator('Weight', 1, 240)])),
                ('boot_needs_rise', models.BooleanField(default=False, verbose_name='boot gating needs rise passes')),
                ('scope', models.CharField(choices=[('all', 'All nodes'), ('nodes', 'Chosen nodes')], default='all', max_length=8)),
                ('enabled', models.BooleanField(default=True)),
                ('version', models.PositiveIntegerField(default=1, editable=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('nodes', models.ManyToManyField(blank=True, related_name='health_checks', to='cluster.node')),
            ],
            options={
                'verbose_name': 'health check',
                'verbose_name_plural': 'health checks',
                'ordering': ['name'],
                'constraints': [models.CheckConstraint(condition=models.Q(('interval_ms__gte', 200), ('interval_ms__lte', 3600000)), name='healthcheck_interval_range'), models.CheckConstraint(condition=models.Q(('timeout_ms__gte', 50), ('timeout_ms__lt', models.F('interval_ms'))), name='healthcheck_timeout_below_interval'), models.CheckConstraint(condition=models.Q(('fall__gte', 1), ('fall__lte', 10), ('rise__gte', 1), ('rise__lte', 10)), name='healthcheck_rise_fall_range'), models.CheckConstraint(condition=models.Q(('weight__gte', 1), ('weight__lte', 240)), name='healthcheck_weight_range'), models.CheckConstraint(condition=models.Q(('port__lte', 65535)), name='healthcheck_port_range'), models.CheckConstraint(condition=models.Q(('kind__in', ['smtp', 'tcp', 'http', 'disk', 'command'])), name='healthcheck_kind_known')],
            },
        ),
        migrations.RunPython(grant_check_permissions, revoke_check_permissions),
    ]
