"""Errors that carry a message meant for the user (CLI and UI show them without a traceback)."""


class LoopLensError(Exception):
    """A problem the user can fix: the message names it and says what to do."""


class UsageError(LoopLensError):
    """Invalid user input (question, options, steps, ...). The CLI exits with status 2."""


class ModelFormatError(LoopLensError):
    """A checkpoint directory that is missing, unreadable, or not in a format LoopLens implements."""


class PromptTooLongError(LoopLensError):
    """The rendered prompt does not fit in the model's context."""


def friendly_error(exc: BaseException) -> str:
    """A one-paragraph message for a page or a log line (no traceback) for any exception."""
    if isinstance(exc, LoopLensError):
        return str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return ("Out of memory while running the model. Try fewer steps, fewer seeds or permutations, a smaller "
                "model, or float32 on a machine with more memory.")
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return f"File problem: {exc}"
    return f"Unexpected problem ({type(exc).__name__}): {exc}"
