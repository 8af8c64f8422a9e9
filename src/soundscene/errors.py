"""User-facing errors.

Every problem a user can cause (a bad file, a bad path, a wrong option, a model
file from another configuration) is raised as a :class:`SoundsceneError` whose
message is one line saying what is wrong and what to do.  The CLI prints that
line and exits with status 2; it never shows a traceback for these.
"""

from __future__ import annotations


class SoundsceneError(Exception):
    """Base class of every error whose message is meant for the user."""


class AudioError(SoundsceneError):
    """An audio file cannot be used (unreadable, empty, truncated, NaN, too short...)."""


class ConfigError(SoundsceneError):
    """A configuration value or file is invalid."""


class DataError(SoundsceneError):
    """A data set, manifest or split is invalid."""


class ModelFileError(SoundsceneError):
    """A model file is missing, damaged or does not fit this version of the code."""


class SoundsceneWarning(UserWarning):
    """Something the user should know that does not stop the work (e.g. an inflated-accuracy risk)."""


def warn(message: str) -> None:
    """Issue a SoundsceneWarning; the CLI prints it as one line starting with "warning:"."""
    import warnings

    warnings.warn(message, SoundsceneWarning, stacklevel=2)

