"""What every command shares (the example scripts and the data tools): a parser whose
errors are one line, argument types that refuse a bad number while the command line is
read, and :func:`run_command`, which turns a user error into one line.

The convention: a user error prints ``PROG: error: WHAT`` on stderr, one line, and the
command exits with status 2, before any work starts where it can be found then; Ctrl-C
prints ``PROG: interrupted`` (and a hint such as how to continue) and exits with 130,
the status of a process ended by SIGINT; SIGTERM unwinds like Ctrl-C, so that no
temporary file is left behind (:mod:`segnp.atomic`).

Standard library only, like :mod:`segnp.atomic`, so that a data tool starts at once.
"""
import argparse
import math
import os
import signal
import sys
import threading

__all__ = ["UserError", "Parser", "positive_int", "nonnegative_int", "positive_float",
           "nonnegative_float", "fraction", "check_new_output", "one_line", "run_command"]

# Exit statuses: a user error, and Ctrl-C (128 + SIGINT, what a shell reports).
USER_ERROR, INTERRUPTED = 2, 130


class UserError(ValueError):
    """A user error that a command reports in one line (a refused run, a wrong file)."""


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (``PROG: error: WHAT``,
    exit 2: no usage block) and that takes no abbreviation of an option: ``--seed 5``
    of a command that has only ``--seeds`` is refused, not read as ``--seeds 5``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(USER_ERROR, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def _number(kind, test, expected):
    """An argparse type: ``kind`` (int or float) of the text, refused unless ``test``."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text}")
        return value
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0,
                         "a finite number > 0")
nonnegative_float = _number(float, lambda v: math.isfinite(v) and v >= 0,
                            "a finite number >= 0")
fraction = _number(float, lambda v: 0 < v < 1, "a number in (0, 1)")


def check_new_output(path, option, overwrite):
    """Refuse (UserError) to replace the existing file ``path`` named by ``option``
    unless ``overwrite`` (the command's --overwrite) is true.  A folder at ``path`` is
    left to the writer, which refuses it (:func:`segnp.atomic.check_writable`)."""
    if os.path.lexists(path) and not os.path.isdir(path) and not overwrite:
        raise UserError(f"{option}: {os.fspath(path)!r} exists; add --overwrite to replace "
                        f"it or choose another name")


def one_line(err, prog=None):
    """The message of ``err`` on one line, without a leading ``prog: ``."""
    text = " ".join((str(err) or type(err).__name__).split())
    # the library's messages name their function, often the command's own name
    if prog and text.startswith(f"{prog}: "):
        text = text[len(prog) + 2:]
    return text


# The Ctrl-Cs a command has seen.  Python drops an exception raised inside a weakref
# callback or __del__ ("Exception ignored in ..."), so a KeyboardInterrupt can be lost;
# long waits (segnp.experiments.schedule) look here too.
CTRL_C = []


def remember_ctrl_c(signum, frame):
    """SIGINT's handler while a command runs: KeyboardInterrupt, remembered in CTRL_C."""
    CTRL_C.append(signum)
    raise KeyboardInterrupt


def _quiet_dropped_ctrl_c(unraisable):
    """sys.unraisablehook while a command runs: a Ctrl-C that Python dropped is in CTRL_C
    and will stop the command with its one line, so its "Exception ignored" traceback is
    not printed; anything else goes to Python's hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and CTRL_C:
        return
    sys.__unraisablehook__(unraisable)


def run_command(main, argv=None, prog=None, hint="", errors=(ValueError, OSError)):
    """Run ``main(argv)`` as a command: returns the exit status (0, or what ``main``
    returned when it is an int).

    A user error (``errors``: ValueError, OSError and their kind by default) prints one
    line on stderr and gives 2; Ctrl-C prints one line (and ``hint``) and gives 130;
    SIGTERM unwinds like Ctrl-C.  ``SEGNP_TRACEBACK=1`` shows the traceback instead.
    """
    from .atomic import cleanup_on_sigterm
    prog = prog or os.path.basename(sys.argv[0]) or "segnp"
    previous = cleanup_on_sigterm()
    debug = os.environ.get("SEGNP_TRACEBACK", "") not in ("", "0")
    CTRL_C.clear()
    # an ignored SIGINT (a shell's background job) stays ignored
    listen = (threading.current_thread() is threading.main_thread()
              and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    previous_int = signal.signal(signal.SIGINT, remember_ctrl_c) if listen else None
    previous_hook, sys.unraisablehook = sys.unraisablehook, _quiet_dropped_ctrl_c
    try:
        status = main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted{hint}", file=sys.stderr)
        return INTERRUPTED
    except errors as err:
        if debug:
            raise
        print(f"{prog}: error: {one_line(err, prog)}", file=sys.stderr)
        return USER_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
        sys.unraisablehook = previous_hook
    return status if isinstance(status, int) else 0
