"""The one line a user reads in `kubectl get cwp`: what the policy saw, what it changed, and
what held it back."""

from __future__ import annotations

MAX_REASON_CHARS = 200


def observed(
    backlog: int, oldest_age_s: float | None, target_s: float, cpu_note: str | None
) -> str:
    parts = [f"backlog {backlog} tasks"]
    if oldest_age_s is not None:
        late = ">" if oldest_age_s > target_s else "<="
        parts.append(f"wait {oldest_age_s:.0f}s {late} {target_s:.0f}s target")
    if cpu_note:
        parts.append(cpu_note)
    return ", ".join(parts)


def reason_text(
    seen: str,
    current: int,
    desired: int,
    wanted: int,
    limited_by: str | None,
    panicking: bool,
) -> str:
    """`wanted` is the policy's own count before limits: shown when a limit held it back."""
    change = f"{current} -> {desired} pods" if desired != current else f"steady at {desired}"
    text = f"{seen}: {change}"
    if limited_by:
        held = f"; wants {wanted}" if wanted != desired else ""
        text += f" (limited by {limited_by}{held})"
    if panicking:
        text = "panic: " + text
    return text[:MAX_REASON_CHARS]
