"""No reference leaks: on a debug interpreter (sys.gettotalrefcount, such as
Debian's python3.14-dbg, which .ci/run uses), the public calls repeated a
thousand times leave the interpreter's total reference count where it was.

NumPy is left out: its wheels are release builds, whose reference counting
the debug total does not see, so calls into it drift by themselves.
"""
import sys

import pytest

from helpers import run_python

pytestmark = pytest.mark.skipif(not hasattr(sys, "gettotalrefcount"),
                                reason="needs a debug build of CPython (sys.gettotalrefcount)")

CALLS = """
import gc, pickle, sys
from pyshl import ShareableList, SharedMemory

def expect(exc, call, *args):
    try:
        call(*args)
    except exc:
        pass
    else:
        raise AssertionError("no %s from %r" % (exc.__name__, call))

def calls(sl, cell, lock, closed):
    sl[0]; sl[1]; sl[2]; sl[3]; sl[4]; sl[-1]
    sl[0] = 5; sl[1] = 2.5; sl[2] = "text"; sl[2] = "\\u00fc"; sl[3] = b"raw"; sl[4] = None
    sl[0:4]; sl[::2]; sl[0:2] = [1, 2.5]
    list(sl); sl.tolist(); len(sl); repr(sl); sl.format; sl._get_packing_format(2)
    sl.count(1); sl.count("text"); sl.index(2.5); None in sl; [1] in sl
    sl.fetch_add(0, 1); sl.fetch_add(0, 2 ** 40); sl.fetch_add(1, 0.5)
    sl.compare_exchange(0, 0, 1); sl.compare_exchange(1, 3.0, 2.5)
    sl.load(0); sl.load(1); sl.store(0, 7); sl.store(1, 1.5)
    cell.fetch_add(1); cell.load(); cell.store(0); cell.compare_exchange(0, 0)
    with lock:
        pass
    lock.acquire(); lock.release(); lock.locked()
    pickle.loads(pickle.dumps(sl)).close()
    expect(IndexError, sl.__getitem__, 99)
    expect(IndexError, sl.__setitem__, -99, 1)
    expect(TypeError, sl.__setitem__, 0, object())
    expect(ValueError, sl.__setitem__, 2, "x" * 100)
    expect(ValueError, sl.index, "missing")
    expect(TypeError, sl.fetch_add, 2, 1)
    expect(OverflowError, sl.fetch_add, 0, 2 ** 63)
    expect(RuntimeError, lock.release)
    expect(ValueError, closed.__getitem__, 0)
    expect(ValueError, closed.fetch_add, 0, 1)
    expect(ValueError, closed.tolist)

sl = ShareableList([1, 2.5, "text", b"raw", None, True, 7, 0])
closed = ShareableList([1])
closed.shm.close()
cell, lock = sl.cell(6), sl.lock(7)
for _ in range(200):                     # warm up: caches, interned strings
    calls(sl, cell, lock, closed)
gc.collect()
before = sys.gettotalrefcount()
for _ in range(1000):
    calls(sl, cell, lock, closed)
gc.collect()
print(sys.gettotalrefcount() - before)
sl.shm.close(); sl.unlink(); closed.unlink()
"""


def test_public_calls_leak_no_references():
    drift = int(run_python(CALLS).stdout)
    # A leak in any call would show as at least 1000 (one per round); what
    # the interpreter does by itself meanwhile (caches, the collector's
    # timing) moves the total by up to ~150 from run to run.
    assert abs(drift) < 500, "the total reference count drifted by %d" % drift


def test_constructing_and_attaching_leak_no_references():
    drift = int(run_python("""
        import gc, sys
        from pyshl import ShareableList
        def once():
            sl = ShareableList([1, "two", b"3", None, 4.5])
            other = ShareableList(name=sl.shm.name)
            other.close()
            with sl:
                pass
        for _ in range(50):
            once()
        gc.collect()
        before = sys.gettotalrefcount()
        for _ in range(300):
            once()
        gc.collect()
        print(sys.gettotalrefcount() - before)
    """).stdout)
    assert abs(drift) < 100, "the total reference count drifted by %d" % drift


def test_element_atomics_leak_no_references():
    # The arrays are made once; the calls below touch no NumPy code (the
    # array object is read directly), so the total sees all they do.
    drift = int(run_python("""
        import gc, sys
        import numpy as np
        import pyshl
        ints = pyshl.zeros(8, np.int64)
        small = pyshl.zeros((2, 4), np.uint8)
        floats = pyshl.zeros(8, np.float32)
        def once():
            pyshl.fetch_add(ints, 3, 1); pyshl.fetch_add(ints, -1, -1)
            pyshl.compare_exchange(ints, 3, 0, 5); pyshl.compare_exchange(ints, 3, 5, 0)
            pyshl.fetch_add(small, (1, 2), 200); pyshl.compare_exchange(small, (0, 0), 0, 0)
            pyshl.fetch_add(floats, 1, 0.5); pyshl.compare_exchange(floats, 1, 0.5, 0.0)
            try:
                pyshl.fetch_add(ints, 99, 1)
            except IndexError:
                pass
        for _ in range(200):
            once()
        gc.collect()
        before = sys.gettotalrefcount()
        for _ in range(1000):
            once()
        gc.collect()
        print(sys.gettotalrefcount() - before)
        for a in (ints, small, floats):
            a.unlink()
    """).stdout)
    assert abs(drift) < 500, "the total reference count drifted by %d" % drift
