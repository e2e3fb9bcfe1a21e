"""One exception type for user-facing errors: a single line naming the file and the problem."""


class GenembedError(Exception):
    """An error caused by input or configuration; the CLI prints it as one line and exits 1."""
