"""Errors that the CLI turns into a one-line message and exit code 2."""


class SemgenError(Exception):
    """A user-facing error: bad input, bad configuration, a broken dataset dir."""


class UnknownClassError(SemgenError, ValueError):
    """A class name that is neither canonical nor a known alias."""


class ManifestError(SemgenError):
    """A manifest record or dataset dir that breaks the contract."""


class ImageReadError(SemgenError):
    """An image file that cannot be read; ``reason`` is a short machine-readable code."""

    def __init__(self, path, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        msg = f"{path}: {reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class StrictFailure(SemgenError):
    """``--strict`` found inputs it could not use; everything else was written (``result`` says what).

    The CLI prints the summary of ``result``, then this message, and exits 1 (not 2: the command
    ran to the end and its output is whole).
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result
