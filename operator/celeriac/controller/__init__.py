"""The kopf operator: handlers, the per-pool reconcile, status and metrics."""
