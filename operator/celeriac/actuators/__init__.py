"""Edges that change the world: the Kubernetes API and the Celery control channel."""
