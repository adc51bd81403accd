"""Fixtures shared by the tests; plain helpers live in tests/helpers.py."""
import pytest

import pyshl
from helpers import assert_no_new_segments, segment_names, std_shared_memory


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


@pytest.fixture
def shared():
    """shared(fn, *args, **kw) calls a pyshl array constructor (pyshl.zeros,
    pyshl.array, ...) and unlinks the array's segment after the test."""
    made = []

    def build(fn, *args, **kwargs):
        array = fn(*args, **kwargs)
        made.append(array.name)
        return array

    yield build
    for name in made:
        try:
            pyshl.SharedMemory(name, track=False).unlink()
        except FileNotFoundError:
            pass
