"""Runboard inside the monitoring operators already run: health, readiness and /metrics.

Every number /metrics shows is read from the database at scrape time or kept
there (``counters``), so several web workers and bridges answer alike.
"""
