"""Every public function fed bad input raises the right exception, with a message."""
import os

import numpy as np
import pytest

import pyshl
from helpers import assert_no_new_segments, segment_names
from pyshl import ShareableList, SharedMemory


def make_list():
    return ShareableList([1, 2.5, "text", None])


# (description, call taking a fresh list, exception, words the message must contain)
CASES = [
    ("sequence not iterable", lambda sl: ShareableList(5), TypeError, "iterable"),
    ("unsupported item", lambda sl: ShareableList([{}]), TypeError, "int, float, bool, str"),
    ("int item too big", lambda sl: ShareableList([2**64]), OverflowError, "64-bit"),
    ("str item too long", lambda sl: ShareableList(["x" * 10**7]), ValueError, "at most"),
    ("2-D array", lambda sl: ShareableList(np.zeros((2, 2))), ValueError, "1-D"),
    ("name not a str", lambda sl: ShareableList(name=5), TypeError, "must be a str"),
    ("name with NUL", lambda sl: ShareableList([1], name="a\0b"), ValueError, "NUL"),
    ("name too long", lambda sl: ShareableList([1], name="n" * 300), ValueError, "too long"),
    ("empty name", lambda sl: ShareableList(name=""), ValueError, "empty"),
    ("name with a slash", lambda sl: ShareableList(name="a/b"), ValueError, "'/'"),
    ("missing segment", lambda sl: ShareableList(name="psm_missing_%d" % os.getpid()),
     FileNotFoundError, "psm_missing"),
    ("negative size", lambda sl: SharedMemory(create=True, size=-1), ValueError, "positive"),
    ("zero size", lambda sl: SharedMemory(create=True, size=0), ValueError, "zero"),
    ("huge size", lambda sl: SharedMemory(create=True, size=2**70), ValueError, "larger"),
    ("size not int", lambda sl: SharedMemory(create=True, size="9"), TypeError, "integer"),
    ("attach without name", lambda sl: SharedMemory(), ValueError, "name"),
    ("index not int", lambda sl: sl["0"], TypeError, "integer"),
    ("index out of range", lambda sl: sl[4], IndexError, "out of range"),
    ("huge index", lambda sl: sl[2**100], IndexError, "out of range"),
    ("assign out of range", lambda sl: sl.__setitem__(-5, 1), IndexError, "out of range"),
    ("assign bad type", lambda sl: sl.__setitem__(0, object()), TypeError, "not 'object'"),
    ("assign too long", lambda sl: sl.__setitem__(2, "x" * 9), ValueError, "exceeds"),
    ("delete", lambda sl: sl.__delitem__(0), TypeError, "fixed"),
    ("slice of other length", lambda sl: sl.__setitem__(slice(0, 2), [1]), ValueError, "size"),
    ("slice from a non-iterable", lambda sl: sl.__setitem__(slice(0, 2), 5), TypeError,
     "iterable"),
    ("slice step zero", lambda sl: sl[::0], ValueError, "zero"),
    ("index() miss", lambda sl: sl.index("nope"), ValueError, "not in "),
    ("packing format out of range", lambda sl: sl._get_packing_format(9), IndexError,
     "out of range"),
    ("view of mixed items", lambda sl: sl.view(), TypeError, "item 1 is a float"),
    ("view start not int", lambda sl: sl.view("a"), TypeError, "integer"),
    ("view of an unsupported dtype", lambda sl: sl.view(dtype="S3"), ValueError, "int64"),
    ("view of a bad dtype", lambda sl: sl.view(dtype="nonsense"), TypeError, "nonsense"),
    ("view of str items", lambda sl: sl.view(2, 3), TypeError, "item 2 is a str"),
    ("fetch_add on a str", lambda sl: sl.fetch_add(2, 1), TypeError, "item 2 is a str"),
    ("fetch_add a str", lambda sl: sl.fetch_add(0, "1"), TypeError, "int or a float"),
    ("fetch_add float to int", lambda sl: sl.fetch_add(0, 0.5), TypeError, "float"),
    ("fetch_add bad index", lambda sl: sl.fetch_add(None, 1), TypeError, "integer"),
    ("compare_exchange mixed", lambda sl: sl.compare_exchange(1, 1, 2), TypeError, "floats"),
    ("store other type", lambda sl: sl.store(0, "x"), TypeError, "int or a float"),
    ("load None", lambda sl: sl.load(3), TypeError, "item 3 is None"),
    ("add_at no indices", lambda sl: sl.add_at(None, 1), TypeError, "integer array"),
    ("add_at float indices", lambda sl: sl.add_at([0.5], 1), TypeError, "integer array"),
    ("add_at str deltas", lambda sl: sl.add_at([0], "1"), TypeError, "integers or floats"),
    ("add_at index out of range", lambda sl: sl.add_at([0, 9], 1), IndexError, "9"),
    ("add_at into a str", lambda sl: sl.add_at([2], 1), TypeError, "item 2 is a str"),
    ("add_at bad shape", lambda sl: sl.add_at([0, 1], [1, 2, 3]), ValueError, "broadcast"),
]
if int(np.__version__.split(".")[0]) >= 2:     # __array__(copy=...) is NumPy 2's
    CASES.append(("asarray copy=False of mixed", lambda sl: np.asarray(sl, copy=False),
                  ValueError, "copy"))


@pytest.mark.parametrize("call, error, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(call, error, words):
    before = segment_names()
    sl = make_list()
    image = bytes(sl.shm.buf)
    try:
        with pytest.raises(error) as info:
            call(sl)
        assert words in str(info.value)
        assert bytes(sl.shm.buf) == image               # nothing was written
    finally:
        sl.close()
        sl.unlink()
    assert_no_new_segments(before)


CLOSED = [
    lambda sl: sl[0], lambda sl: sl[0:1], lambda sl: sl.__setitem__(slice(0, 1), [1]),
    lambda sl: sl.view(), lambda sl: np.asarray(sl), lambda sl: sl.tolist(),
    lambda sl: sl.fetch_add(0, 1), lambda sl: sl.load(0), lambda sl: sl.store(0, 1),
    lambda sl: sl.compare_exchange(0, 1, 2), lambda sl: sl.add_at([0], 1),
    lambda sl: sl._type_counts(), lambda sl: sl.__enter__(), lambda sl: sl.format,
]


@pytest.mark.parametrize("call", CLOSED)
def test_closed_lists_refuse_everything(call):
    sl = make_list()
    sl.close()
    sl.unlink()
    with pytest.raises(ValueError, match="closed"):
        call(sl)


def test_an_uninitialised_list_is_closed():
    sl = ShareableList.__new__(ShareableList)
    with pytest.raises(ValueError, match="closed"):
        sl[0]
    assert "closed" in repr(sl)


def test_a_failed_create_leaves_no_segment():
    before = segment_names()
    with pytest.raises(OSError):
        SharedMemory(create=True, size=2**50)     # more than /dev/shm holds
    assert_no_new_segments(before)
    with pytest.raises(FileExistsError):
        taken = SharedMemory(create=True, size=8)
        try:
            SharedMemory(taken.name, create=True, size=8)
        finally:
            taken.close()
            taken.unlink()
    assert_no_new_segments(before)


def test_manager_rejects_bad_items_without_leaking():
    before = segment_names()
    with pyshl.SharedMemoryManager() as smm:
        with pytest.raises(TypeError):
            smm.ShareableList([object()])
    assert_no_new_segments(before)
