"""The errors inductscan raises.

Every error subclasses :class:`InductscanError` and the stdlib error a caller would catch anyway
(``LookupError`` for an unknown name, ``ValueError`` for a bad value, ``OSError`` for files), so
that library users can catch either; the CLI turns any of them into one line that says what to do.
"""

import errno
import re
from collections.abc import Callable

NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file-size limit

# A parameter's name in a message sits between these two characters, which no path or name of a
# run holds: Python callers read the name, the command line its flag (inductscan/cli/errors.py).
_OPEN, _CLOSE = "\x02", "\x03"
_NAMED = re.compile(f"{_OPEN}([^{_CLOSE}]*){_CLOSE}")


def parameter(name: str) -> str:
    """``name`` as a message names a parameter: ``threads must be >= 1`` for a Python caller,
    ``--threads must be >= 1`` on the command line, which maps each name to its flag in one place.
    A name may say whose field it is (``icl.examples``: the ``examples`` of ``ScanConfig.icl``);
    a Python caller reads the field's own name."""
    return f"{_OPEN}{name}{_CLOSE}"


def spelled(message: str, spell: Callable[[str], str] = lambda name: name.rpartition(".")[2]) -> str:
    """``message`` with each :func:`parameter` name written by ``spell`` (default: as a Python caller
    reads it)."""
    return _NAMED.sub(lambda match: spell(match.group(1)), message)


class InductscanError(Exception):
    """Base of every error inductscan raises on purpose. Its message names parameters as Python
    callers pass them (:func:`parameter`)."""

    def __str__(self) -> str:
        return spelled(super().__str__())

    def message(self, spell: Callable[[str], str]) -> str:
        """The message, each parameter's name written by ``spell`` (the command line: its flag)."""
        return spelled(super().__str__(), spell)


class UnknownSuiteError(InductscanError, LookupError):
    """A suite name that is not in the catalog and is not a folder."""


class UnknownRunError(InductscanError, LookupError):
    """A seed or step that the suite does not have."""


class NotHeldError(InductscanError, LookupError):
    """A suite or run that a selection names and a results folder does not hold: a typo, most
    often, so it is an error rather than an empty answer. ``kind`` is "suite" or "run", ``wanted``
    the names asked for and ``held`` those the folder holds."""

    def __init__(self, message: str, *, kind: str, wanted: list[str], held: list[str]):
        super().__init__(message)
        self.kind, self.wanted, self.held = kind, wanted, held


class ConfigError(InductscanError, ValueError):
    """A bad value in a probe or scan setting."""


class ProbeTooLongError(ConfigError):
    """The probe does not fit in the model's context."""


class UnsupportedArchitectureError(InductscanError, ValueError):
    """A checkpoint whose architecture (or one of its config attributes) inductscan cannot run."""


class CheckpointError(InductscanError, OSError):
    """A checkpoint that cannot be scored; the scan records it and goes on."""


class CheckpointUnavailableError(CheckpointError):
    """The checkpoint's files cannot be found (missing branch, folder or file)."""


class CorruptCheckpointError(CheckpointError):
    """The checkpoint's files exist but cannot be read as weights (truncated, corrupt, wrong keys)."""


class OutputError(InductscanError, OSError):
    """The results folder cannot be written or holds something inductscan cannot read."""


class DamagedFileError(OutputError):
    """A results file that cannot be read as its table's: truncated, garbage, or a parquet file
    of another tool. The message names it and says what to do."""


class DiskFullError(OutputError):
    """No space left (a full disk, a quota or a file-size limit) writing a file: the scan stops at
    once, what was written stays, and a re-run of the same command resumes. ``errno`` is the
    operating system's (ENOSPC, EDQUOT or EFBIG)."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


def no_space(error: BaseException) -> bool:
    """Whether ``error`` is the operating system saying there is no room for what was written."""
    return isinstance(error, OSError) and error.errno in NO_SPACE


class NotCachedError(CheckpointError):
    """Offline (HF_HUB_OFFLINE), a file that is not in the local cache: the Hub may well have it, so
    the scan records a failure, not a skip; unlike a file the Hub lacks, going online may cure it."""


class TransientError(CheckpointError):
    """A failure that a retry may cure: dropped connection, server error, read timeout. Retried by
    :class:`inductscan.hub.Retry`; one that lasts is recorded as the checkpoint's failure."""


class IntegrityError(TransientError):
    """A downloaded file whose size or sha256 is not what the Hub announced."""


class HubUnreachableError(CheckpointError, ConnectionError):
    """The Hub cannot be reached at all (no connection): the scan records the checkpoint and stops,
    since every other download would fail the same way."""


class NonFiniteError(CorruptCheckpointError):
    """A weight, or an activation of the forward pass, that is NaN or infinite."""


class OutOfMemory(InductscanError, MemoryError):
    """The device ran out of memory while scoring: the scan stops with a hint."""


class GrammarError(ConfigError):
    """A suite's branch-name grammar that cannot be used (a field it does not know, no step)."""


class BranchListingError(InductscanError, LookupError):
    """A repo's branches cannot be listed or used: none in the suite's grammar, none at all, offline
    without a cached listing, or a cached listing of another repo."""
