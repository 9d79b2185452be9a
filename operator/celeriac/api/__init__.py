"""The CeleryWorkerPool API: models, CRD generation and defaults."""
