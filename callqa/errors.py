"""Errors that name the input and the problem, so a user knows what to fix."""


class CallqaError(Exception):
    """Base class for errors callqa reports to users in one line."""


class ConfigError(CallqaError):
    """A tenant or preset file is missing or invalid."""


class AudioError(CallqaError):
    """A recording cannot be read, decoded or is empty / silent."""


class ScoringError(CallqaError):
    """No valid analysis could be produced for a call (every attempt is still recorded)."""


class PartitionKeyError(CallqaError):
    """A `calls` partition key does not have the form `<tenant>__<external id>`."""


class TranscriptionError(CallqaError):
    """A speech-to-text provider failed or answered with something unusable."""


class CrmError(CallqaError):
    """A CRM (or other call source) could not be read or written; retried on a later tick.

    `written`: notes a write-back had already written (card -> note id) before it failed
    on a later card, so the next push updates them instead of adding second ones."""

    written: dict[str, str] = {}  # noqa: RUF012 (set per instance; read-only default)


class CrmUnavailable(CrmError):
    """The CRM did not answer, timed out or answered 5xx: an outage, retried later."""


class CrmRateLimited(CrmError):
    """The CRM answered 429; `retry_after_s` is how long it asked us to wait."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CrmAuthError(CrmError):
    """The CRM refused the credentials (401/403): an expired or revoked token."""


class CrmPayloadError(CrmError):
    """A CRM record or webhook payload does not have the documented shape."""
