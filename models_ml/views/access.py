"""Who may see a job's pages and the images it made."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404

from annotations.roles import is_admin
from annotations.users import User

from ..models import Job

# htmx stops polling when it receives this status.
STOP_POLLING = 286


def job_for_viewer(*, job_id: int, user: User, kinds: tuple[str, ...] = ()) -> Job:
    """The job, if ``user`` created it or is an admin; 404 otherwise, so that
    somebody else's job and a missing one look the same."""
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=job_id)
    if kinds and job.kind not in kinds:
        raise Http404
    if not is_admin(user) and job.created_by_id != user.pk:
        raise Http404
    return job
