"""Exceptions raised by autorec.

Every error a user can cause by giving bad input derives from :class:`AutorecError`, so that
the command line can turn it into one line on stderr and exit status 2.
"""

from __future__ import annotations

from os import PathLike

__all__ = ["AutorecError", "CheckpointError", "DataError", "DatasetUnavailableError",
           "ModelFileError", "NotFittedError", "ResourceError", "TrainingError", "first_line"]


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``exc``'s message (at most ``limit`` characters, a longer one cut at
    a word and ended with "..."), or its type's name when it has none: how a one-line error
    message quotes the error behind it."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    if limit is None or len(line) <= limit:
        return line
    cut = line[:max(limit - 3, 1)]  # "...for recv operat" read as a word
    return (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2:] else cut) + "..."


class AutorecError(ValueError):
    """Base class for errors caused by user input (data, options, files)."""


class CheckpointError(AutorecError):
    """A training checkpoint cannot be resumed: a corrupted, truncated or altered file, or one
    made with other data or another configuration; or a folder that already holds one was
    given without resuming. The message is one line naming the folder and what differs."""


class DataError(AutorecError):
    """A ratings source is malformed.

    Parameters
    ----------
    problem
        What is wrong, in a few words.
    source
        The file (or ``"<DataFrame>"``) being read.
    line
        The 1-based line number in ``source`` where the problem is, when known.
    field
        The column involved, when known.
    unit
        What ``line`` counts: ``"line"`` for files, ``"row"`` for DataFrames.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
        unit: str = "line",
    ) -> None:
        self.problem = problem
        self.source = None if source is None else str(source)
        self.line = line
        self.field = field
        where = [part for part, known in ((self.source, source is not None),
                                          (f"{unit} {line}", line is not None),
                                          (f"field {field!r}", field is not None)) if known]
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)


class DatasetUnavailableError(AutorecError):
    """A builtin data set is neither available locally nor downloadable."""


class ModelFileError(AutorecError):
    """A saved model cannot be loaded: not a model folder, a missing, truncated or tampered
    file (its SHA-256 differs from the one recorded), or a format version this autorec does
    not read. The message is one line naming the file."""


class NotFittedError(AutorecError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


class ResourceError(AutorecError):
    """The run cannot fit in the memory available (estimated before allocating); the message
    gives the figures and what to change."""


class TrainingError(RuntimeError):
    """Training failed on valid input: the loss became NaN or infinite (the run diverged).

    Not an input error: the command line reports it in one line with exit status 1.
    """

    @classmethod
    def diverged(cls, epoch: int, what: str, value: float) -> TrainingError:
        """The error of a run whose ``what`` (the loss, the validation RMSE) became ``value``
        (not finite) in ``epoch`` (1-based), with what to change."""
        return cls(f"training diverged in epoch {epoch}: the {what} became {value}; lower "
                   "the learning rate (--lr) or raise the regularisation (--l2)")
