"""Zero-copy NumPy views, bulk construction from arrays, slicing, and view lifetimes."""
import array
import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import (
    CAPTURE,
    assert_no_new_segments,
    needs_stdlib_list,
    run_python,
    segment_exists,
    segment_names,
)
from pyshl import ShareableList

NUMPY2 = int(np.__version__.split(".")[0]) >= 2
needs_numpy2 = pytest.mark.skipif(not NUMPY2, reason="__array__(copy=...) is NumPy 2's")


def shares(view, sl):
    return np.shares_memory(view, np.frombuffer(sl.shm.buf, np.uint8))


# -- view() ------------------------------------------------------------------

@pytest.mark.parametrize("items, dtype", [
    ([1, -2, 2**63 - 1], np.int64), ([0.5, -1e300, np.inf], np.float64),
    ([True, False, True], np.bool_),
])
def test_view_is_zero_copy_and_typed(make, items, dtype):
    sl = make(items)
    view = sl.view()
    assert view.dtype == dtype and view.tolist() == items
    assert shares(view, sl)
    view[1] = items[0]
    assert sl[1] == items[0]
    sl[2] = items[1]
    assert view[2] == items[1]


def test_bool_view_writes_keep_the_stdlib_layout(make):
    sl = make([True, False])
    sl.view()[1] = True
    assert bytes(sl.shm.buf) == bytes(make([True, True]).shm.buf)


def test_view_of_a_sub_range(make):
    sl = make(["head", 1, 2, 3, 4.5, 5.5, None])
    assert sl.view(1, 4).tolist() == [1, 2, 3]
    assert sl.view(4, 6).dtype == np.float64
    assert sl.view(-3, -1).tolist() == [4.5, 5.5]
    assert sl.view(2, 2, dtype=np.int64).shape == (0,)


@pytest.mark.parametrize("items, start, message", [
    ([1, 2, "a", 4], None, "item 2 is a str"),
    ([1, 2, 3.0], None, "item 2 is a float"),
    ([1.0, True], None, "item 1 is a bool"),
    ([None, 1], None, "item 0 is None"),
    ([b"x", 1], None, "item 0 is a bytes"),
    ([1, 2, None], 1, "item 2 is None"),
])
def test_mixed_ranges_name_the_first_other_index(make, items, start, message):
    sl = make(items)
    with pytest.raises(TypeError, match=message):
        sl.view(start)


def test_number_in_a_wide_slot_cannot_be_viewed(make):
    sl = make([1, "sixteen bytes!!", 3])
    sl[1] = 2                     # an int in a 16-byte slot
    with pytest.raises(TypeError, match="item 1 is a number in a 16-byte slot"):
        sl.view()
    assert sl.view(2).tolist() == [3]


def test_empty_views(make):
    sl = make([])
    with pytest.raises(ValueError, match="dtype"):
        sl.view()
    assert sl.view(dtype=np.float64).dtype == np.float64
    assert sl.view(dtype="int64").shape == (0,)
    with pytest.raises(ValueError):
        sl.view(dtype=np.int32)


def test_view_dtype_is_checked(make):
    sl = make([1, 2])
    assert sl.view(dtype=np.int64).tolist() == [1, 2]
    with pytest.raises(TypeError):
        sl.view(dtype=np.float64)


def test_view_shows_raw_bytes_after_another_type_is_stored(make):
    sl = make([1.5, 2.5])
    view = sl.view()
    sl[0] = 5                     # another type: the view is typed by the old formats
    assert view[0] == np.frombuffer(np.int64(5).tobytes(), np.float64)[0]
    with pytest.raises(TypeError, match="item 1 is a float, not an int"):
        sl.view()


def test_view_writes_are_seen_by_another_process(make):
    sl = make([0] * 8)
    sl.view()[:] = np.arange(8) * 10
    proc = run_python(f"""
        from pyshl import ShareableList
        sl = ShareableList(name={sl.shm.name!r})
        print(sl.view().sum())
        sl.view()[7] = -1
        sl.close()
    """)
    assert int(proc.stdout) == 280
    assert sl[7] == -1


# -- __array__ ---------------------------------------------------------------

@needs_numpy2
def test_asarray_is_zero_copy_for_a_numeric_list(make):
    sl = make([1, 2, 3])
    assert shares(np.asarray(sl), sl)
    assert shares(np.asarray(sl, copy=False), sl)
    assert not shares(np.array(sl), sl)                 # np.array copies
    converted = np.asarray(sl, dtype=np.float32)
    assert converted.dtype == np.float32 and not shares(converted, sl)
    with pytest.raises(ValueError):
        np.asarray(sl, dtype=np.float32, copy=False)


@needs_stdlib_list
@pytest.mark.parametrize("items", [[1, "a"], [1, 2.5], [True, 2], [], [None, 1], ["x", b"y"]])
def test_asarray_of_mixed_lists_matches_the_stdlib(make, items):
    ours = np.asarray(make(items))
    expected = np.asarray(make.std(items))
    assert ours.dtype == expected.dtype and ours.tolist() == expected.tolist()


@needs_numpy2
def test_asarray_copy_false_refuses_a_mixed_list(make):
    with pytest.raises(ValueError):
        np.asarray(make([1, "a"]), copy=False)


# -- bulk construction -------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                   np.uint32, np.uint64, np.float16, np.float32, np.float64,
                                   np.bool_, ">i4", ">f8"])
def test_arrays_build_the_same_segment_as_their_items(make, dtype):
    source = (np.arange(-5, 20) % 7 == 0) if dtype is np.bool_ else \
        np.arange(0 if np.dtype(dtype).kind == "u" else -7, 25).astype(dtype)
    sl = make(source)
    items = source.tolist()
    assert sl.tolist() == items
    assert bytes(sl.shm.buf) == bytes(make(items).shm.buf)
    if hasattr(make, "std"):
        assert bytes(sl.shm.buf) == bytes(make.std(items).shm.buf)


def test_buffers_that_are_not_arrays(make):
    for source in (array.array("q", [1, -2]), array.array("d", [0.5]), b"ab",
                   bytearray(b"\x01\x02"), memoryview(array.array("h", [3, 4]))):
        assert make(source).tolist() == list(source)
    assert make(b"ab").tolist() == [97, 98]
    if hasattr(make, "std"):      # the stdlib iterates bytes, and so gets ints too
        assert list(make.std(b"ab")) == [97, 98]


def test_strided_and_sliced_arrays(make):
    source = np.arange(20)
    assert make(source[::3]).tolist() == source[::3].tolist()
    assert make(source[::-1]).tolist() == source[::-1].tolist()


def test_arrays_of_other_types_go_item_by_item(make):
    assert make(np.array(["a", "bc"])).tolist() == ["a", "bc"]
    assert make(np.array([1, "x", None], dtype=object)).tolist() == [1, "x", None]
    masked = np.ma.array([1, 2], mask=[False, False])
    assert make(masked).tolist() == [1, 2]
    with pytest.raises(TypeError):
        make(np.array([1 + 2j]))


@pytest.mark.parametrize("source, error", [
    (np.array([0, 2**63], dtype=np.uint64), OverflowError),
    (np.zeros((2, 2)), ValueError),
    (np.array(5), ValueError),
    (np.ma.array([1, 2], mask=[False, True]), TypeError),
])
def test_bad_arrays_leave_no_segment(source, error):
    before = segment_names()
    with pytest.raises(error):
        ShareableList(source)
    assert_no_new_segments(before)


def test_a_view_copies_into_a_new_list(make):
    sl = make(list(range(10)))
    copy = make(sl.view())
    assert copy.tolist() == sl.tolist() and copy.shm.name != sl.shm.name
    copy[0] = 99
    assert sl[0] == 0
    assert make(make([True, False]).view()).tolist() == [True, False]


def test_empty_array(make):
    assert make(np.array([], dtype=np.int64)).tolist() == []


# -- slicing -------------------------------------------------------------------

slices = st.builds(slice, st.none() | st.integers(-12, 12), st.none() | st.integers(-12, 12),
                   st.none() | st.integers(-4, 4).filter(bool))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None,
          max_examples=150)
@given(slices)
def test_slices_read_and_write_like_a_list(make, index):
    items = list(range(10))
    sl = make(items)
    assert sl[index] == items[index]
    replacement = [-x for x in items[index]]
    items[index] = replacement
    sl[index] = replacement
    assert sl.tolist() == items


def test_slice_assignment_is_validated_before_writing(make):
    sl = make([1, "abc", 2.5, None])
    before = bytes(sl.shm.buf)
    for values, error in (([7, "x" * 9, 1.0, None], ValueError),
                          ([7, "ok", [], None], TypeError),
                          ([7, 2**64, 1.0, None], OverflowError),
                          ([7], ValueError)):
        with pytest.raises(error):
            sl[:] = values
        assert bytes(sl.shm.buf) == before
    sl[::2] = (np.int64(5), "longer")
    assert sl.tolist() == [5, "abc", "longer", None]
    with pytest.raises(TypeError):
        del sl[0:1]
    with pytest.raises(ValueError):
        sl[::0]


def test_slices_of_a_closed_list_raise(make):
    sl = make([1, 2])
    sl.close()
    with pytest.raises(ValueError, match="closed"):
        sl[:]
    with pytest.raises(ValueError, match="closed"):
        sl[:] = [1, 2]


# -- lifetimes -------------------------------------------------------------------

def test_close_with_live_views_never_raises_or_dangles():
    sl = ShareableList(list(range(1000)))
    view = sl.view()
    frombuffer = np.frombuffer(sl.shm.buf, np.uint8)
    sl.close()
    with pytest.raises(ValueError):
        sl[0]
    with pytest.raises(ValueError):
        sl.view()
    assert view.sum() == sum(range(1000))
    view[0] = 5
    assert frombuffer[8 * 1002] == 5
    sl.unlink()
    assert not segment_exists(sl.shm.name)
    assert view[0] == 5                 # the memory lives while a view does
    del view, frombuffer
    gc.collect()


def test_views_outlive_the_list_object():
    sl = ShareableList([1.5, 2.5])
    view = sl.view()
    sl.unlink()
    del sl
    gc.collect()
    assert view.tolist() == [1.5, 2.5]


def test_unlink_with_a_view_alive_in_another_process(make):
    sl = make([1, 2, 3])
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pyshl import ShareableList
            sl = ShareableList(name={sl.shm.name!r})
            view = sl.view()
            sl.close()
            print("ready", flush=True)
            sys.stdin.readline()          # the parent unlinks meanwhile
            view[0] = 10
            print(view.sum(), flush=True)
        """)],
        stdin=subprocess.PIPE, **CAPTURE)
    assert child.stdout.readline().strip() == "ready"
    sl.view()[1] = 20
    sl.close()
    sl.unlink()
    out, err = child.communicate("go\n", timeout=60)
    assert child.returncode == 0, err
    assert int(out) == 10 + 20 + 3


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                   np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                                   np.float64])
def test_empty_arrays_give_empty_lists(make, dtype):
    sl = make(np.array([], dtype=dtype))
    assert len(sl) == 0 and sl.tolist() == [] and sl.shm.size == 16
