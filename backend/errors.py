"""Errors that carry a message meant for the user (CLI and UI show them without a traceback)."""


class LoopLensError(Exception):
    """A problem the user can fix: the message names it and says what to do."""


class UsageError(LoopLensError):
    """Invalid user input (question, options, steps, ...). The CLI exits with status 2."""


class ModelFormatError(LoopLensError):
    """A checkpoint directory that is missing, unreadable, or not in a format LoopLens implements."""


class PromptTooLongError(LoopLensError):
    """The rendered prompt does not fit in the model's context."""
