"""One exception type for user-facing errors: a single line naming the file and the problem."""


class GenembedError(Exception):
    """An error caused by input or configuration; the CLI prints it as one line and exits 1."""


def one_line(exc: Exception) -> str:
    """What the CLI and the rule scripts print for an error: a GenembedError's message, or an OSError
    no check foresaw (a failing disk, a vanished file) as ``file: reason``."""
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc.strerror or exc)
    return str(exc)
