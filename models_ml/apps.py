from django.apps import AppConfig


class ModelsMlConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "models_ml"
    verbose_name = "ML lifecycle"

    def ready(self) -> None:
        from annotations.signals import (
            first_rating_committed,
            job_requested,
            round_closed,
            round_created,
        )

        from .receivers import (
            decide_comparison_on_close,
            queue_requested_job,
            rescore_round_when_due,
            score_round_on_create,
            stop_the_rest_of_a_run,
        )
        from .signals import job_stopped

        round_created.connect(
            score_round_on_create, dispatch_uid="models_ml.score_round_on_create"
        )
        job_requested.connect(queue_requested_job, dispatch_uid="models_ml.queue_job")
        round_closed.connect(
            decide_comparison_on_close, dispatch_uid="models_ml.decide_comparison"
        )
        first_rating_committed.connect(
            rescore_round_when_due, dispatch_uid="models_ml.rescore_round"
        )
        job_stopped.connect(stop_the_rest_of_a_run, dispatch_uid="models_ml.stop_run")
