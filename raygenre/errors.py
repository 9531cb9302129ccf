"""Every error a user can cause, as one sentence.

Each CLI catches :class:`RaygenreError`, prints ``error: <message>`` and exits 2; anything else is a
bug and keeps its traceback. Messages say what is wrong and where (a path, a YAML key, a file name).
"""

from __future__ import annotations


class RaygenreError(Exception):
    """Base of every error a user can act on."""


class ConfigError(RaygenreError, ValueError):
    """A config that cannot be used: unknown key, bad value, missing file, unknown model."""


class DatasetError(RaygenreError, ValueError):
    """A data set that cannot be used as given (missing root, no clips, bad ids)."""


class SplitError(RaygenreError, ValueError):
    """A split that cannot be drawn over the usable clips (a genre too small, no listed clips present)."""


class PrepareError(RaygenreError, RuntimeError):
    """The prepare stage cannot go on (no usable clips, a failed Ray Data job)."""


class SyntheticError(RaygenreError, ValueError):
    """The synthetic GTZAN cannot be generated as configured."""


class RecordsError(RaygenreError, ValueError):
    """Records that are missing, empty or malformed."""


class WeightsError(RaygenreError, FileNotFoundError):
    """Pretrained weights that are missing or unusable; the message names the file and where it goes."""


class ArtifactError(RaygenreError, ValueError):
    """A kept model that is missing, of an incompatible version, or not in a safe format."""


class RunMismatchError(ConfigError):
    """``--resume`` with settings other than the ones the run was started with (the message names them)."""


class RunLockedError(RaygenreError, RuntimeError):
    """A run directory another sweep is writing (the message names its holder)."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on a single line (for CLIs and failed records)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
