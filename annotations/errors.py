"""Domain errors raised by services; views turn them into 4xx responses."""


class DomainError(Exception):
    """A request that is well-formed but not allowed in the current state."""

    status_code = 400


class NotAllowed(DomainError):
    status_code = 403


class QuotaExceeded(DomainError):
    """A user has as many ML jobs running, or started today, as their role
    allows (settings.JOB_QUOTAS)."""

    status_code = 429


class RoundNotOpen(DomainError):
    status_code = 409


class NotServed(DomainError):
    status_code = 409


class AlreadyRated(DomainError):
    status_code = 409


class NothingToUndo(DomainError):
    status_code = 409


class ImportFailed(DomainError):
    """The dataset was rejected; ``report`` lists every problem found."""

    def __init__(self, message: str, report: dict[str, object]) -> None:
        super().__init__(message)
        self.report = report
