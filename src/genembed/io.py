"""Small file helpers: atomic writes and compressed-file detection."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .errors import GenembedError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` left by killed writers (their process is gone)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A killed writer leaves ``path`` untouched (old or absent); its temporary is removed by the
    next writer of the same path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically, pretty-printed."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def is_gzip(path: str | os.PathLike) -> bool:
    """True when the file starts with the gzip magic bytes (plain gzip or bgzip)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def check_input(path: str | os.PathLike, what: str) -> None:
    """Refuse, in one line naming it, a path that cannot be read as a file: missing, a directory, a
    symbolic-link loop, or not readable."""
    import errno
    import stat

    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise GenembedError(f"{p}: {what} not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise GenembedError(f"{p}: a loop of symbolic links, not a {what}") from None
        raise GenembedError(f"{p}: cannot read the {what} ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise GenembedError(f"{p}: a directory, not a {what}")
    if not os.access(p, os.R_OK):
        raise GenembedError(f"{p}: permission denied (cannot read the {what})")


def remove_empty(folders: list[Path]) -> None:
    """Remove folders a failed step created, deepest first, where they are still empty."""
    for folder in folders:
        if not folder.is_dir():
            continue
        try:
            folder.rmdir()
        except OSError:  # not empty: neither are the folders above it
            return


def open_text(path: str | os.PathLike):
    """Open a plain or gzip/bgzip-compressed text file for reading as bytes lines."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def read_table(path: str | os.PathLike, columns: list[str] | None = None):
    """A Parquet window table (polars), refused in one line naming it when missing or unreadable."""
    import polars as pl

    try:
        return pl.read_parquet(path, columns=columns)
    except FileNotFoundError:
        raise GenembedError(f"{path}: window table not found") from None
    except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
        raise GenembedError(f"{path}: unreadable window table ({str(exc).splitlines()[0]}); it is truncated or"
                            " not Parquet: delete it and rerun") from None


def count_rows(path: str | os.PathLike) -> int:
    """Rows of a Parquet table, from its footer."""
    import polars as pl

    try:
        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
    except FileNotFoundError:
        raise GenembedError(f"{path}: window table not found") from None
    except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
        raise GenembedError(f"{path}: unreadable window table ({str(exc).splitlines()[0]}); it is truncated or"
                            " not Parquet: delete it and rerun") from None
