"""A discrete-time simulator of a Celery queue and a worker fleet, for comparing policies."""
