import os
import subprocess
import sys
import textwrap
import time

import pytest

import pyshl

# The standard ShareableList shares pyshl's layout from Python 3.9 on; 3.7
# has no shared_memory module and 3.8's list uses an older layout.
if sys.version_info >= (3, 9):
    from multiprocessing import shared_memory as std_shared_memory
else:
    std_shared_memory = None
needs_stdlib_list = pytest.mark.skipif(
    std_shared_memory is None,
    reason="this Python's standard library has no ShareableList of the 3.9+ layout")

SHM_DIR = "/dev/shm"


def segment_names():
    return {n for n in os.listdir(SHM_DIR) if n.startswith("psm_")}


def assert_no_new_segments(before, grace=1.0):
    """No segment appeared since the `before` snapshot and stayed.

    Other processes on the machine may create short-lived segments meanwhile:
    a new one must outlive a short grace period to count as ours, and
    segments that disappeared do not matter.
    """
    deadline = time.monotonic() + grace
    new = segment_names() - before
    while new and time.monotonic() < deadline:
        time.sleep(0.05)
        new = segment_names() - before
    assert not new, "shared memory segments were left behind: %s" % sorted(new)


def segment_exists(name):
    return os.path.exists(os.path.join(SHM_DIR, name.lstrip("/")))


@pytest.fixture(scope="session", autouse=True)
def no_leaked_segments():
    """The whole test session leaves no psm_* segment behind.

    Reported, not deleted: another process on the machine (a second test
    session, say) may own a segment that appeared meanwhile.
    """
    before = segment_names()
    yield
    assert_no_new_segments(before)


def _dispose(sl):
    shm = sl.shm
    try:
        shm.close()
    except Exception:
        pass
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


@pytest.fixture
def make():
    """make(*args, **kw) builds a pyshl ShareableList and disposes of it after the test;
    make.std(...) does the same with the standard library's class."""
    made = []

    def build(*args, cls=pyshl.ShareableList, **kwargs):
        sl = cls(*args, **kwargs)
        made.append(sl)
        return sl

    if std_shared_memory is not None:
        build.std = lambda *a, **kw: build(*a, cls=std_shared_memory.ShareableList, **kw)
    yield build
    for sl in reversed(made):
        _dispose(sl)


@pytest.fixture
def raw_segment():
    """raw_segment(data) creates a segment holding exactly `data` and returns its name."""
    names = []

    def create(data):
        shm = pyshl.SharedMemory(create=True, size=max(len(data), 1))
        shm.buf[:len(data)] = data
        names.append(shm)
        return shm.name

    yield create
    for shm in names:
        shm.close()
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


def run_python(code, *, check=True, timeout=120):
    """Run code in a fresh interpreter (a real, separate process)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("child failed (%d):\n%s\n%s"
                             % (proc.returncode, proc.stdout, proc.stderr))
    return proc
