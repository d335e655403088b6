"""Notices about flags: to webhooks, Slack-compatible webhooks and email, never in ingest's way.

Ingest only *enqueues* (``outbox.flags_changed`` inserts ``Delivery`` rows in
its own transaction); the dispatcher (``dispatcher.run`` next to the bridges,
or ``manage.py sendnotices``) sends what is due, with a timeout on every call
and retries with backoff, in a thread of its own. Nothing is imported here:
``adminpanel.models`` imports ``notify.models`` while it is itself loading.
"""
