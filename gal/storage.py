"""Crash-safe files: every write goes to a temporary name and is renamed into place, and a run
folder is locked while a `gal run` works in it."""

from __future__ import annotations

import errno
import fcntl
import io
import os
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from gal.errors import GalError


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing half-written left behind
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_png(path: Path, image) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def check_output(flag: str, path: Path, reads: dict[str, list], folder: bool = False) -> None:
    """Before any work: `path`, which `flag` writes (a file, or a `folder`), can be made there, and it is none of the
    paths the command reads (`reads`: flag -> paths; those not on this machine, such as hub ids, skipped) nor inside
    one of them: no output lands on an input."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise GalError(f"{flag} {path}: is a {'file' if folder else 'folder'}; expected "
                       f"{'a folder' if folder else 'the name of a file'}")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise GalError(f"{flag} {path}: {blocking} is a file, so nothing can be made under it; expected a path in a folder")
    target = path.resolve()
    for other, read in ((f, Path(p)) for f, paths in reads.items() for p in paths if p):
        if read.exists() and (target == read.resolve() or read.resolve() in target.parents):
            raise GalError(f"{flag} {path}: {'is' if target == read.resolve() else 'inside'} {other} {read}, which this "
                           "command reads and never writes; expected a path of its own")


@contextmanager
def folder_in_place(path: Path):
    """Yield a temporary folder beside `path`; when the block succeeds, it replaces `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


@contextmanager
def disk_errors(run_dir: Path):
    """A full disk or a file-size limit met while a run writes: one line that says so and how to go on (what was
    recorded so far is kept: the same command resumes)."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as e:
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in str(e):
            raise GalError(f"--out {run_dir}: no space left on the device; everything recorded so far is kept: "
                           "free some space and run the same command to resume") from None
        if getattr(e, "errno", None) == errno.EFBIG:
            raise GalError(f"--out {run_dir}: a file grew past this process's file-size limit (ulimit -f); everything "
                           "recorded so far is kept: raise the limit and run the same command to resume") from None
        raise


def remove_leftovers(folder: Path) -> None:
    """Delete temporary files of writes that a killed process left behind."""
    for p in Path(folder).rglob(".*.tmp-*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


_PASSES: dict[str, int] = {}  # how often this process passed each pause point


def pause_point(name: str) -> None:
    """For tests that make a race or a kill happen at a known moment: with GAL_PAUSE_AT=NAME:FILE (or NAME#N:FILE: the
    N-th time this process passes NAME), this process writes FILE.waiting here and waits (up to ten minutes: the other
    side may be a whole run on a loaded machine) until FILE.go exists. Without the variable (always, outside tests), nothing."""
    point, _, barrier = os.environ.get("GAL_PAUSE_AT", "").partition(":")
    wanted, _, nth = point.partition("#")
    if wanted != name:
        return
    _PASSES[name] = _PASSES.get(name, 0) + 1
    if nth and int(nth) != _PASSES[name]:
        return
    import time

    Path(f"{barrier}.waiting").write_text(str(os.getpid()))
    deadline = time.monotonic() + 600
    while not Path(f"{barrier}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)


class RunLock:
    """An exclusive lock on a run folder. The OS drops it when the holder dies, so a stale lock
    from a killed run never blocks the next one."""

    def __init__(self, folder: Path, hint: str = "wait for it or stop it"):
        self.path = Path(folder) / ".lock"
        self.hint = hint  # what the user can do meanwhile
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise GalError(f"{self.path.parent}: another gal process (pid {holder}) is working in this folder; "
                           f"{self.hint}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
