"""Jobs over the API: admins see and cancel all, researchers read, anyone
cancels the jobs they started."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.common import ErrorOutputSerializer, paginated_response
from annotations.permissions import (
    ReadOnlyForResearcher,
)
from annotations.roles import is_admin
from annotations.users import signed_in
from medrlhf.pagination import LimitOffsetPagination
from medrlhf.serverpaths import ServerPathsHidden

from ..models import Job, JobKind, JobStatus
from ..services.jobs import job_cancel


@extend_schema_serializer(component_name="Job")
class JobOutputSerializer(ServerPathsHidden, serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.username", default=None, read_only=True
    )
    is_finished = serializers.BooleanField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "progress",
            "message",
            "error",
            "attempts",
            "max_attempts",
            "cancel_requested",
            "is_finished",
            "params",
            "result",
            "created_by",
            "created_at",
            "updated_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields


def _job_for(*, request: Request, view: APIView, job_id: int) -> Job:
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=job_id)
    view.check_object_permissions(request, job)
    return job


class JobListApi(APIView):
    permission_classes = [IsAuthenticated, ReadOnlyForResearcher]
    pagination_class = LimitOffsetPagination

    @extend_schema_serializer(component_name="JobFilter")
    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(JobKind.choices, required=False)
        status = serializers.ChoiceField(JobStatus.choices, required=False)

    @extend_schema(
        operation_id="jobs_list",
        parameters=[FilterSerializer],
        responses=JobOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        jobs = Job.objects.select_related("created_by").filter(**query.validated_data)
        return paginated_response(
            serializer_class=JobOutputSerializer,
            queryset=jobs,
            request=request,
            view=self,
        )


class JobDetailApi(APIView):
    permission_classes = [IsAuthenticated, ReadOnlyForResearcher]

    @extend_schema(
        operation_id="jobs_retrieve",
        responses={200: JobOutputSerializer, 404: ErrorOutputSerializer},
    )
    def get(self, request: Request, job_id: int) -> Response:
        return Response(
            JobOutputSerializer(
                _job_for(request=request, view=self, job_id=job_id),
                context={"request": request},
            ).data
        )


class JobCancelApi(APIView):
    """Ask a job to stop: a queued job is cancelled at once, a running one soon.

    Admins may cancel any job; anyone else the jobs they started (another's
    is a 404)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="jobs_cancel",
        request=None,
        responses={200: JobOutputSerializer, 404: ErrorOutputSerializer},
    )
    def post(self, request: Request, job_id: int) -> Response:
        job = get_object_or_404(Job, pk=job_id)
        if not (is_admin(request.user) or job.created_by_id == request.user.pk):
            raise NotFound("No such job.")
        job = job_cancel(job=job, actor=signed_in(request))
        return Response(JobOutputSerializer(job, context={"request": request}).data)
