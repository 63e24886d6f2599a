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
