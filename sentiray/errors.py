"""Typed errors of the core. Each names the problem; entrypoints turn them into exit code 1 or a 4xx."""

from __future__ import annotations


class SentirayError(Exception):
    """Base class: an error whose message is meant for the user, shown without a traceback."""


class ConfigError(SentirayError, ValueError):
    """A configuration value is invalid (the message names the field and what is allowed)."""


class DataError(SentirayError, ValueError):
    """A dataset cannot be used (the message names the file, column and how many rows are bad)."""


class ArtifactError(SentirayError):
    """A model artifact is missing, incomplete, tampered with or of an unknown schema."""


class ModelLoadError(SentirayError):
    """A base model or tokenizer cannot be loaded safely (pickle weights, remote code, missing files)."""


class InputError(SentirayError, ValueError):
    """A prediction input is unusable (empty text, lone surrogates, too long with truncation off).

    `reason` says what is wrong; `index` is the position of the text at fault in the list sent, or None
    when the problem is the list itself. The message is `inputs[INDEX]: REASON` (or the reason alone),
    the text the HTTP API answers; callers that report per row read `reason` and `index`, never the
    message.
    """

    def __init__(self, reason: str, index: int | None = None) -> None:
        super().__init__(reason if index is None else f"inputs[{index}]: {reason}")
        self.reason = reason
        self.index = index

    def __reduce__(self) -> tuple[type[InputError], tuple[str, int | None]]:
        # Raised in Ray workers and Serve replicas: pickled with its fields, not just the message.
        return (type(self), (self.reason, self.index))


class RunStateError(SentirayError):
    """A training run cannot be started or resumed (finished already, config changed, unknown name)."""
