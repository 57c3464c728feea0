"""Signals the ML lifecycle sends.

``job_stopped(job=...)``: a job failed for good or was cancelled; sent once
the transaction that recorded it commits. Receivers are connected in
``apps.py``.
"""

from django.dispatch import Signal

job_stopped = Signal()
