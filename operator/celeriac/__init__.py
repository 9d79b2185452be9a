"""celeriac: a Kubernetes operator that autoscales Celery workers."""

__version__ = "0.1.0"
