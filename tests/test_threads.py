"""Threads: a list, its views, cells and locks used by eight threads while a
ninth closes it; exact totals from threads; no torn str or bytes reads.

Meant for free-threaded builds (run there with PYTHON_GIL=0, as .ci/run
does), where nothing serialises the threads; with the GIL they pass too.
Each case runs in a child process (thread_cases.py), so that a crash fails
the case that crashed.  PYSHL_THREAD_ROUNDS repeats each case more.
"""
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import thread_cases

from helpers import CAPTURE

SCRIPT = Path(__file__).resolve().parent / "thread_cases.py"
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
# 100 rounds make a crash near certain on a free-threaded build for a list
# that swaps its mapping out on close (pyshl did, before _region.h); with the
# GIL, fewer suffice.
ROUNDS = int(os.environ.get("PYSHL_THREAD_ROUNDS", "100" if FREE_THREADED else "10"))


@pytest.mark.parametrize("case", thread_cases.cases())
def test_threaded_case(case):
    try:
        proc = subprocess.run([sys.executable, str(SCRIPT), case, str(ROUNDS)], **CAPTURE,
                              timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("case %r hung (or never exited) for 300 s" % case)
    if proc.returncode < 0:
        pytest.fail("case %r killed the interpreter with %s\n%s"
                    % (case, signal.Signals(-proc.returncode).name, proc.stderr[-3000:]))
    assert proc.returncode == 0, "case %r:\n%s\n%s" % (case, proc.stdout, proc.stderr[-3000:])
    assert proc.stdout.strip() == "ok " + case


@pytest.mark.skipif(not FREE_THREADED, reason="a free-threaded (--disable-gil) build only")
def test_import_keeps_the_gil_off():
    code = textwrap.dedent("""
        import sys
        import pyshl, pyshl._codec, pyshl._mapping
        sl = pyshl.ShareableList([1])
        sl.fetch_add(0, 1)
        sl.shm.close(); sl.unlink()
        print(sys._is_gil_enabled())
    """)
    # Without PYTHON_GIL=0: a module that did not declare itself safe would
    # turn the GIL back on, with a RuntimeWarning.
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], **CAPTURE, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_fork_children_write_text_while_the_parents_threads_do():
    # A free-threaded child inherits the item lock as it was at fork(): it
    # must start it afresh, not wait forever for a thread it does not have.
    code = textwrap.dedent("""
        import os, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)   # fork() with threads running
        from pyshl import ShareableList
        sl = ShareableList(["x" * 40] * 4)
        stop = threading.Event()
        def writer():
            while not stop.is_set():
                sl[1] = "abc"
                sl[1] = "defgh"
                sl.count("abc")
        threads = [threading.Thread(target=writer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for _ in range(30):
            pid = os.fork()
            if pid == 0:
                sl[2] = "child"
                os._exit(0 if sl[2] == "child" and sl.count("child") == 1 else 1)
            assert os.waitpid(pid, 0)[1] == 0
        stop.set()
        for thread in threads:
            thread.join()
        sl.shm.close()
        sl.unlink()
        print("ok")
    """)
    try:
        proc = subprocess.run([sys.executable, "-c", code], **CAPTURE, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a fork child hung on the item lock")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"
