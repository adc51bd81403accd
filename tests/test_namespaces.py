"""Locks across PID namespaces, as containers sharing /dev/shm have them: each
program runs as PID 1 of its own namespace (unshare --pid --fork --mount-proc),
where thread ids name different threads or nothing."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import pyshl
from helpers import CAPTURE


def _unshare_works():
    if shutil.which("unshare") is None:
        return "no unshare command"
    try:
        proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                               "-c", "import os; print(os.getpid())"], **CAPTURE, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return "unshare failed: %s" % exc
    if proc.returncode != 0 or proc.stdout.strip() != "1":
        return "unshare --pid is refused here (%s)" % proc.stderr.strip()[-200:]
    return None


REFUSED = _unshare_works()
pytestmark = pytest.mark.skipif(REFUSED is not None, reason=str(REFUSED))


def in_namespace(code, *args):
    """Start `code` as PID 1 of a new PID namespace; unshare passes SIGKILL on
    to it (--kill-child)."""
    return subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                             sys.executable, "-c", textwrap.dedent(code)] + list(args),
                            **CAPTURE)


def finish(proc, timeout=120):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("timed out:\n%s\n%s" % (out, err))
    return proc.returncode, out, err


COMPOUND = """
import os, sys, warnings
import pyshl
warnings.simplefilter("error")             # a wrongful takeover would warn: fail
sl = pyshl.ShareableList(name=sys.argv[1])
lock = sl.lock(0)
assert os.getpid() == 1
sl.fetch_add(3, 1)                         # ready
while sl.load(4) == 0:                     # all start together, so that they contend
    os.sched_yield()
for _ in range(int(sys.argv[2])):
    with lock:                             # a compound update: lost if not exclusive
        a = sl[1]
        b = sl[2]
        os.sched_yield()
        sl[1] = a + 1
        sl[2] = b - 1
sl.shm.close()
print("done")
"""


def _go(sl, ready):
    deadline = time.monotonic() + 60
    while sl.load(3) < ready and time.monotonic() < deadline:
        time.sleep(0.01)
    sl.store(4, 1)


@pytest.mark.parametrize("workers", [2, 3])
def test_programs_that_are_each_pid_1_exclude_each_other(make, workers):
    # Before claims: most blocking acquires raised "this thread holds the lock
    # already" (every holder was thread 1 of its namespace).
    sl = make([0, 0, 0, 0, 0])
    rounds = 20000
    procs = [in_namespace(COMPOUND, sl.shm.name, str(rounds)) for _ in range(workers)]
    _go(sl, workers)
    results = [finish(p) for p in procs]
    for code, out, err in results:
        assert (code, out) == (0, "done\n"), err
    assert sl[1] == workers * rounds and sl[2] == -workers * rounds and sl[0] == 0


def test_a_host_process_and_a_namespaced_one_exclude_each_other(make):
    # Before claims: the namespaced program found no thread of the host's id
    # in its namespace, took the lock over while it was held, and about half
    # of the updates were lost.
    sl = make([0, 0, 0, 0, 0])
    rounds = 20000
    proc = in_namespace(COMPOUND, sl.shm.name, str(rounds))
    lock = sl.lock(0)
    _go(sl, 1)
    for _ in range(rounds):
        with lock:
            a, b = sl[1], sl[2]
            os.sched_yield()
            sl[1], sl[2] = a + 1, b - 1
    code, out, err = finish(proc)
    assert (code, out) == (0, "done\n"), err
    assert sl[1] == 2 * rounds and sl[2] == -2 * rounds and not lock.recovered


HOLD = """
import sys, time
import pyshl
sl = pyshl.ShareableList(name=sys.argv[1])
lock = sl.lock(0)
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def _start_holder(sl):
    holder = in_namespace(HOLD, sl.shm.name)
    line = holder.stdout.readline()
    assert line == "held\n", holder.stderr.read() if not line else line
    return holder


def test_a_sigkilled_holder_in_another_namespace_is_recovered(make):
    sl = make([0])
    holder = _start_holder(sl)
    lock = sl.lock(0)
    try:
        assert lock.acquire(timeout=0.3) is False       # alive: not taken over
        assert not lock.recovered
        holder.send_signal(signal.SIGKILL)              # unshare, then its child (--kill-child)
        holder.wait(60)
        start = time.monotonic()
        with pytest.warns(pyshl.LockRecoveredWarning):
            assert lock.acquire(timeout=30)
        assert lock.recovered and time.monotonic() - start < 30
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()


TRY_RELEASE = """
import sys
import pyshl
sl = pyshl.ShareableList(name=sys.argv[1])
lock = sl.lock(0)
try:
    lock.release()
    print("released")
except RuntimeError as exc:
    print("refused:", exc)
print("acquire:", lock.acquire(timeout=0.3))
sl.shm.close()
"""


def test_release_by_a_pid_1_that_does_not_hold_the_lock_is_refused(make):
    sl = make([0])
    holder = _start_holder(sl)
    try:
        code, out, err = finish(in_namespace(TRY_RELEASE, sl.shm.name))
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("refused:") and "does not hold" in lines[0]
        assert lines[1] == "acquire: False"          # the holder lives: not taken over
        assert sl.lock(0).locked()
    finally:
        holder.kill()
        holder.communicate()
