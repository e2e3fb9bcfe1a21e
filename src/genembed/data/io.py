"""Small file helpers: atomic writes and compressed-file detection."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterator

from genembed.errors import GenembedError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries (files or report folders) of ``path`` left by killed writers (their
    process is gone)."""
    import shutil

    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[-1].split(".")[0]  # also .name.tmp-PID.fai and the like
        if pid.isdigit() and not _alive(int(pid)):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A killed writer leaves ``path`` untouched (old or absent); its temporary is removed by the
    next writer of the same path."""
    path = Path(path)
    if path.is_dir():
        raise GenembedError(f"{path}: a directory; name a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if disk_full(exc, path.parent):
            raise GenembedError(f"{path}: no space left on device") from None
        if exc.filename and str(tmp) in (str(exc.filename), str(exc.filename2)):  # name the file the user gave
            raise GenembedError(f"{path}: cannot write it ({exc.strerror or exc})") from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def report_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a new hidden folder beside ``out`` to write a report into; on success its files move
    into ``out`` (replacing those of the same name), on failure it is removed: a report is there
    whole or not at all."""
    import shutil

    out = Path(out)
    made = missing_folders(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    work = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        yield work
        out.mkdir(exist_ok=True)
        for item in work.iterdir():
            if item.is_dir() and (out / item.name).is_dir():
                shutil.rmtree(out / item.name)
            os.replace(item, out / item.name)
        work.rmdir()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        remove_empty(made)
        raise


def disk_full(exc: OSError, folder: Path) -> bool:
    """Whether a failed write ran out of space (numpy and HDF5 do not always say ENOSPC)."""
    import errno
    import shutil

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def ensure_space(path: str | os.PathLike, needed: int) -> None:
    """Refuse, before writing, a file of about ``needed`` bytes that would not fit (libraries such
    as HDF5 and TorchScript may crash the process instead of failing cleanly on a full disk)."""
    import shutil

    folder = Path(path).parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < needed + (64 << 10):
        raise GenembedError(f"{path}: no space left on device ({free:,} bytes free, about {needed:,} needed)")


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
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode):  # read more than once, from the start
        raise GenembedError(f"{p}: a pipe or device, not a {what} (pipes are not supported: write it to a file first)")
    if not os.access(p, os.R_OK):
        raise GenembedError(f"{p}: permission denied (cannot read the {what})")


def missing_folders(path: str | os.PathLike) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: what a step will create
    (and :func:`remove_empty` removes again if the step fails)."""
    path = Path(path)
    return [p for p in (path, *path.parents) if not p.exists()]


def remove_empty(folders: list[Path]) -> None:
    """Remove folders a failed step created, deepest first, where they are still empty."""
    for folder in folders:
        if not folder.is_dir():
            continue
        try:
            folder.rmdir()
        except OSError:  # not empty (so are the folders above it, whose rmdir fails alike)
            continue


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on an output folder for the length of a run: a second genembed run
    writing the same folder is refused at once instead of mixing its files with the first's."""
    import fcntl

    folder = Path(folder)
    made = missing_folders(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".genembed.lock"
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise GenembedError(f"{folder}: another genembed run (pid {holder}) is writing here; wait for it to"
                                " finish, or write elsewhere") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            remove_empty(made)  # a run that wrote nothing leaves no folder


def open_text(path: str | os.PathLike):
    """Open a plain or gzip/bgzip-compressed text file for reading as bytes lines."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


@contextlib.contextmanager
def _table_errors(path: str | os.PathLike) -> Iterator[None]:
    """A missing or unreadable Parquet window table as one line naming it."""
    import polars as pl

    try:
        yield
    except FileNotFoundError:
        raise GenembedError(f"{path}: window table not found") from None
    except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
        raise GenembedError(f"{path}: unreadable window table ({str(exc).splitlines()[0]}); it is truncated or"
                            " not Parquet: delete it and rerun") from None


def read_table(path: str | os.PathLike, columns: list[str] | None = None):
    """A Parquet window table (polars), refused in one line naming it when missing or unreadable."""
    import polars as pl

    with _table_errors(path):
        return pl.read_parquet(path, columns=columns)


def count_rows(path: str | os.PathLike) -> int:
    """Rows of a Parquet table, from its footer."""
    import polars as pl

    with _table_errors(path):
        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
