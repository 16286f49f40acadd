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
    """A prediction input is unusable (empty text, lone surrogates, too long with truncation off)."""


class RunStateError(SentirayError):
    """A training run cannot be started or resumed (finished already, config changed, unknown name)."""
