"""A resource tracker for shared memory segments, for Python 3.7.

Python 3.8+ has multiprocessing.resource_tracker, which pyshl uses there.  On
3.7 this module stands in with the same functions: the first register()
starts a small helper process that reads REGISTER/UNREGISTER lines from a
pipe.  When every process holding the pipe has exited (this one and any it
forked), the helper unlinks the segments still registered, with the standard
tracker's warning, so a creator that dies without unlinking leaks nothing.
"""

import os
import signal
import subprocess
import sys
import threading
import warnings

_lock = threading.Lock()
_helper = None


def ensure_running():
    """Start the helper unless this process has one, or inherited one by fork.

    A forked child writes to its parent's helper through the inherited pipe,
    as the standard tracker does; whether the helper still lives shows when a
    write fails (a child cannot wait() for its parent's helper).
    """
    global _helper
    with _lock:
        if _helper is None:
            _helper = subprocess.Popen(
                [sys.executable, "-c", "from pyshl._tracker import main; main()"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)


def _send(command, name):
    global _helper
    if "\n" in name:
        raise ValueError("a segment name must not contain a newline")
    line = ("%s:%s\n" % (command, name)).encode("utf-8", "surrogateescape")
    for _attempt in range(2):
        ensure_running()
        with _lock:
            try:
                _helper.stdin.write(line)
                _helper.stdin.flush()
                return
            except (BrokenPipeError, ValueError):
                _helper = None        # it died: start another and say it again


def register(name, rtype):
    """Unlink `name` if it is still registered when this process tree exits."""
    _send("REGISTER", name)


def unregister(name, rtype):
    _send("UNREGISTER", name)


def main():
    """The helper: keep the registered names; unlink the rest at end of input."""
    from pyshl._shm import unlink_segment

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # survive the Ctrl-C that ends its parent
    names = set()
    for line in sys.stdin.buffer:
        command, _, name = line.decode("utf-8", "surrogateescape").rstrip("\n").partition(":")
        if command == "REGISTER":
            names.add(name)
        elif command == "UNREGISTER":
            names.discard(name)
    if names:
        warnings.warn("resource_tracker: There appear to be %d leaked shared_memory "
                      "objects to clean up at shutdown" % len(names), stacklevel=1)
    for name in names:
        try:
            unlink_segment(name)
        except OSError:
            pass
    os._exit(0)
