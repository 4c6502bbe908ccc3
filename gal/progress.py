"""Progress bars: tqdm's on a terminal; where the output is a file (a log, CI), one plain line every 30 s and
one at the end instead of a stream of carriage returns."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


class _Lines(tqdm):
    def __init__(self, *args, **kwargs):
        kwargs.update(mininterval=30.0, dynamic_ncols=False, ncols=100)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if msg == "":  # tqdm clearing its line: there is no line to clear in a file
            return
        self.fp.write((msg or self.__str__()) + "\n")
        self.fp.flush()

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)  # shown with the next line, not as a line

    def close(self):
        if not self.disable and self.n != getattr(self, "_last_shown", None):
            self._last_shown = self.n
            self.display()
        super().close()


def progress(iterable=None, **kwargs) -> tqdm:
    """`tqdm(...)` with gal's defaults: `leave=False` on a terminal, plain lines elsewhere."""
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    out = kwargs.get("file") or sys.stderr
    return (tqdm if out.isatty() else _Lines)(iterable, **kwargs)
