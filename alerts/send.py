"""Sending one message through Apprise, turning its True/False into an error we can keep."""

from __future__ import annotations

import time
from dataclasses import dataclass

import apprise

from alerts.redact import scrub


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    duration_ms: int
    error: str | None = None
    # Retrying cannot help: the URL is invalid or names a service Apprise does not know.
    permanent: bool = False


_ASSET = apprise.AppriseAsset(service_timeout=0)


class AppriseSender:
    """Sends through Apprise; secrets of the URL never reach the returned error text."""

    def __init__(self, timeout_s: float = 15.0) -> None:
        self.timeout_s = timeout_s

    def send(self, url: str, title: str, body: str) -> SendResult:
        started = time.perf_counter()
        # No Apprise deadline: with one (its default service_timeout of 60 s, or
        # notify(timeout=...)) Apprise hands every send to its process-wide pool of
        # min(32, cpu_count + 4) threads, whatever alerts_workers says. Without one it sends
        # in this thread; the socket timeouts (capped at timeout_s) bound a hung endpoint.
        sender = apprise.Apprise(asset=_ASSET)
        if not sender.add(url):
            return SendResult(False, 0, "invalid or unsupported Apprise URL", permanent=True)
        for server in sender:
            server.socket_connect_timeout = min(server.socket_connect_timeout, self.timeout_s)
            server.socket_read_timeout = min(server.socket_read_timeout, self.timeout_s)
        logs: list[str] = []
        result = sender.notify(
            body=body,
            title=title,
            # Plain text keeps our paragraphs; Apprise would otherwise fold them into HTML.
            body_format=apprise.NotifyFormat.TEXT,
            log_callback=lambda entry, plugin: logs.append(f"{entry.level}: {entry.message}"),
        )
        elapsed = int((time.perf_counter() - started) * 1000)
        if result:
            return SendResult(True, elapsed)
        problems = [line for line in logs if not line.startswith(("DEBUG", "INFO"))] or logs
        error = scrub("; ".join(problems)[-500:] or "Apprise reported failure", url)
        return SendResult(False, elapsed, error)
