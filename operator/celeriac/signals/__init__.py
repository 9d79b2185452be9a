"""What the operator observes: Celery-correct backlog, worker load, pod CPU, each with its age."""
