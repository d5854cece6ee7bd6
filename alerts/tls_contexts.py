"""One TLS context per sending thread for Apprise's SMTP plugin, instead of one per email.

Apprise 2.3's SMTP plugin (apprise/plugins/email/smtp.py) calls ssl.create_default_context()
for every email it sends, TLS or not, and so reads the system's CA bundle every time: about
15 ms of CPU per email, 60% of a dispatcher's CPU in bench/recall.py. A context can be
reused: each thread keeps one, and every call hands it back with the default checks on
again (the plugin then switches them off itself for a URL with `verify=no`, as it does on a
fresh one). Threads never share one, so one email's settings cannot reach another's.
"""

from __future__ import annotations

import importlib
import logging
import ssl
import threading
import types

log = logging.getLogger(__name__)

_PLUGIN = "apprise.plugins.email.smtp"


class _Contexts(threading.local):
    context: ssl.SSLContext | None = None


_contexts = _Contexts()


def default_context() -> ssl.SSLContext:
    """This thread's context, with certificate and host name checks on, as
    ssl.create_default_context() makes a new one."""
    context = _contexts.context
    if context is None:
        context = _contexts.context = ssl.create_default_context()
    # check_hostname = True also sets verify_mode to CERT_REQUIRED (Python 3.7+).
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


def reuse_in_apprise_smtp() -> bool:
    """Give Apprise's SMTP plugin per-thread contexts; False (and nothing changed) when the
    plugin is not where this version of Apprise keeps it."""
    try:
        plugin = importlib.import_module(_PLUGIN)
    except ImportError:
        return False
    current = getattr(plugin, "ssl", None)
    if isinstance(current, types.SimpleNamespace):
        return True
    if current is not ssl:
        log.warning("apprise's SMTP plugin has no ssl module to give reused contexts to")
        return False
    shim = types.SimpleNamespace(**vars(ssl))
    shim.create_default_context = default_context
    plugin.ssl = shim
    return True
