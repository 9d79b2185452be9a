"""Decisions: pure functions of signals and memory."""

from celeriac.policy.decide import decide

__all__ = ["decide"]
