"""The run's record as the processes of a run use it: the main process takes the folder's lock, prepares the ledger
and makes every write (`Writer`), the other processes of an `accelerate launch` read it and meet it after each write.
The loop calls the same methods on every process and has no rank checks."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

from gal import run_folder
from gal.errors import GalError
from gal.ledger import Ledger, Sample
from gal.storage import pause_point


@contextmanager
def open_record(run_dir: Path, accelerator, prepare: Callable[[Ledger], None]) -> Iterator[tuple[Ledger, "Writer"]]:
    """The run folder as every process of a run uses it: the main process takes the folder's lock, clears what a
    killed process left behind and `prepare`s the ledger (starts or checks the run); then every process opens it."""
    from gal.storage import RunLock, remove_leftovers

    main = accelerator.is_main_process
    made = main and not run_dir.exists()  # a refused new run removes the folder it made
    if main:
        pause_point("before-lock")  # tests make a race happen here (two processes, a barrier)
        run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir) if main else nullcontext():
        if main:
            remove_leftovers(run_dir)
            try:
                ledger = Ledger(run_dir)
            except GalError:
                _remove_if_empty(run_dir, made)
                raise
            try:
                prepare(ledger)
            except BaseException:
                started = ledger.get("config") is not None
                ledger.close()
                if not started:  # refused before its first record: leave no folder behind
                    _remove_if_empty(run_dir, made)
                raise
        accelerator.wait_for_everyone()
        if not main:
            ledger = Ledger(run_dir, read_only=True)  # a write from another process fails loudly, not silently twice
        try:
            yield ledger, Writer(ledger, accelerator)
        finally:
            ledger.close()


def _remove_if_empty(run_dir: Path, made: bool) -> None:
    """The folder this command made, holding nothing but its lock, an empty ledger and files half-written by it."""
    import shutil

    if made and all(p.name in (".lock", Ledger.FILE, f"{Ledger.FILE}-journal") or p.name.startswith(".")
                    for p in run_dir.iterdir()) and not (run_dir / run_folder.ROUNDS).exists():
        shutil.rmtree(run_dir, ignore_errors=True)


class Writer:
    """Every write of a run, by the main process of an `accelerate launch` alone (the others opened the ledger read
    only), after which every process meets: the loop calls the same methods on every process and has no rank checks.
    One method per kind of write; each is one ledger transaction."""

    def __init__(self, ledger: Ledger, accelerator):
        self.ledger, self.accelerator = ledger, accelerator

    def _main(self, write: Callable[[], Any]) -> None:
        if self.accelerator.is_main_process:
            write()
        self.accelerator.wait_for_everyone()

    def log(self, line: str, sink: Callable[[str], None]) -> None:
        """A line for the user, printed once."""
        if self.accelerator.is_main_process:
            sink(line)

    def files(self, write: Callable[[], Any]) -> None:
        """Files every process would write alike (a checkpoint): written once."""
        self._main(write)

    def record_checkpoint(self, round_: int, checkpoint: str, train_loss: float) -> None:
        self._main(lambda: self.ledger.record_checkpoint(round_, checkpoint, train_loss))

    def add_samples(self, samples: list[Sample]) -> None:
        self._main(lambda: self.ledger.add_samples(samples))
        pause_point("samples")  # tests kill a run at a known moment here

    def add_class_images(self, rows: list[tuple[int, int, str]]) -> None:
        self._main(lambda: self.ledger.add_class_images(rows))

    def record_wave(self, round_: int, wave: int, targets: dict[int, int]) -> None:
        self._main(lambda: self.ledger.record_wave(round_, wave, targets))

    def wait_for_review(self, round_: int, openness: float, directions: list[tuple[int, float, float, int]]) -> None:
        self._main(lambda: self.ledger.wait_for_review(round_, openness, directions))

    def close_round(self, round_: int, **closing) -> None:
        self._main(lambda: self.ledger.close_round(round_, **closing))
