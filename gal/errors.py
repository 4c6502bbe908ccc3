"""The one exception type a user sees: bad input, named precisely. The CLI prints it as one line
and exits with status 2; anything else is a bug and keeps its traceback."""


class GalError(Exception):
    """Bad input or a refused operation. The message names the file or flag, what was found and
    what is expected."""


def warn(message: str) -> None:
    """Something that works, but probably not as the user meant: one line on stderr."""
    import sys

    print(f"gal: warning: {message}", file=sys.stderr)
