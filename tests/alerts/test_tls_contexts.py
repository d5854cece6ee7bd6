"""Apprise's SMTP plugin gets one TLS context per thread, always handed back with its
checks on (alerts/tls_contexts.py)."""

import importlib
import ssl
import threading

from alerts import send  # noqa: F401 - installs the contexts, as the dispatcher's import does
from alerts.tls_contexts import default_context


def test_a_thread_gets_its_context_back_with_the_checks_on_again():
    first = default_context()
    # What Apprise does for a URL with verify=no.
    first.check_hostname = False
    first.verify_mode = ssl.CERT_NONE
    again = default_context()
    assert again is first
    assert again.check_hostname is True and again.verify_mode == ssl.CERT_REQUIRED
    # It trusts what a fresh default context trusts.
    assert again.cert_store_stats() == ssl.create_default_context().cert_store_stats()


def test_threads_never_share_a_context():
    seen = []
    worker = threading.Thread(target=lambda: seen.append(default_context()))
    worker.start()
    worker.join()
    assert seen and seen[0] is not default_context()


def test_apprises_smtp_plugin_makes_its_contexts_here():
    plugin = importlib.import_module("apprise.plugins.email.smtp")
    assert plugin.ssl.create_default_context is default_context
    # Everything else it reads of the ssl module is the real one.
    assert plugin.ssl.CERT_NONE is ssl.CERT_NONE
