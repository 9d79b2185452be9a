"""Reference Celery worker for celeriac."""
