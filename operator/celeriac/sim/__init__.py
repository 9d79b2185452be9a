"""A discrete-event simulator of a Celery queue and a worker fleet, for comparing policies."""
