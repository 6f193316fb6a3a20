"""The Django project of the appliance's control plane."""

# Load the Celery app with Django so @shared_task binds to it.
from appliance.celery import app as celery_app

__all__ = ("celery_app",)
