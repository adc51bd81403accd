"""Where pyshl deliberately differs from the standard library: its bug fixes."""
import enum
import os
import pickle

import numpy as np
import pytest

from helpers import assert_no_new_segments, needs_stdlib_list, run_python, segment_names
from pyshl import ShareableList, SharedMemory, UnsupportedTypeError


# 1. str slots are sized by UTF-8 bytes.
@pytest.mark.parametrize("text", ["ééééé", "€" * 3, "日本語のテキスト", "🐍" * 5, "a" * 7 + "é"])
def test_non_ascii_text_round_trips(make, text):
    sl = make([text, "x"])
    assert sl[0] == text
    assert sl._get_packing_format(0) == "%ds" % (8 * (len(text.encode()) // 8 + 1))
    sl[0] = text          # rewriting fits exactly
    assert sl[0] == text


@pytest.mark.parametrize("text, slot", [("encodés", 8), ("éééé", 8), ("aé", 8), ("€", 8),
                                        ("a" * 7 + "é", 16), ("ééééé", 16), ("€" * 3, 16)])
def test_str_slots_are_the_stdlib_size_wherever_the_text_fits_it(make, text, slot):
    # The standard library sizes by characters: 8 * (len // 8 + 1).  Where
    # the UTF-8 fits that slot, pyshl makes the very same slot; only where it
    # would truncate does pyshl size by bytes.
    stdlib_slot = 8 * (len(text) // 8 + 1)
    assert slot == (stdlib_slot if len(text.encode()) <= stdlib_slot
                    else 8 * (len(text.encode()) // 8 + 1))
    sl = make([text, "x"])
    assert sl._get_packing_format(0) == "%ds" % slot and sl[0] == text


@needs_stdlib_list
@pytest.mark.parametrize("text", ["encodés", "éééé", "aé", "€", "a" * 7 + "é", "naïve café"])
def test_copies_of_fitting_non_ascii_text_are_byte_identical(make, text):
    ours, theirs = make([text, 1, "plain"]), make.std([text, 1, "plain"])
    assert bytes(ours.shm.buf) == bytes(theirs.shm.buf)
    copy = make(ours)
    assert bytes(copy.shm.buf) == bytes(theirs.shm.buf) and copy.format == theirs.format


def test_non_ascii_write_is_checked_in_bytes(make):
    sl = make(["abcdefg"])          # an 8-byte slot
    sl[0] = "éééé"                  # 8 bytes: fits
    assert sl[0] == "éééé"
    with pytest.raises(ValueError, match="exceeds available storage"):
        sl[0] = "ééééé"             # 5 characters, 10 bytes
    assert sl[0] == "éééé"


# 2. Indexes are checked against -len..len-1.
def test_out_of_range_indexes_raise(make):
    sl = make([1, 2, 3])
    before = bytes(sl.shm.buf)
    for bad in (3, -4, 10**6, -10**6, 2**70, -2**70, 10**30, np.int64(7)):
        # The standard library's message, then the index and the length.
        named = r": %d, for a ShareableList of 3 items" % bad
        with pytest.raises(IndexError, match="^index out of range" + named):
            sl[bad]
        with pytest.raises(IndexError, match="^assignment index out of range" + named):
            sl[bad] = 99
        with pytest.raises(IndexError, match="^Requested position out of range" + named):
            sl._get_packing_format(bad)
        with pytest.raises(IndexError, match=named):
            sl.fetch_add(bad, 1)
    assert bytes(sl.shm.buf) == before
    assert sl[-3] == 1 and sl[np.int64(2)] == 3
    with pytest.raises(TypeError):
        sl["0"]
    with pytest.raises(TypeError):
        sl[1.0]


# 3. A failed assignment leaves the slot untouched.
@pytest.mark.parametrize("value, error", [
    (2**63, OverflowError), (-2**63 - 1, OverflowError), (np.uint64(2**64 - 1), OverflowError),
    ("x" * 9, ValueError), (b"y" * 9, ValueError), ([1], TypeError), (1 + 2j, TypeError),
    (bytearray(b"a"), TypeError), ("\ud800", ValueError),
])
@pytest.mark.parametrize("initial", ["str", b"bytes", 5, 2.5, True, None])
def test_failed_assignment_changes_nothing(make, initial, value, error):
    sl = make([initial, "guard"])
    before = bytes(sl.shm.buf)
    fmt = sl._get_packing_format(0)
    with pytest.raises(error):
        sl[0] = value
    assert bytes(sl.shm.buf) == before
    assert sl._get_packing_format(0) == fmt
    assert sl[0] == initial


# 4. The constructor validates everything before creating the segment.
@pytest.mark.parametrize("items, error", [
    ([1, 2, [3]], TypeError), ([2**64], OverflowError), ([1, -2**63 - 1], OverflowError),
    (["x" * 9_999_992], ValueError), ([b"y" * 10_000_000], ValueError),
    ([object()], KeyError), ([1.0, {}], UnsupportedTypeError), (["\udcff"], ValueError),
])
def test_bad_items_leave_no_segment(items, error):
    before = segment_names()
    with pytest.raises(error):
        ShareableList(items)
    assert_no_new_segments(before)


def test_unsupported_type_error_is_a_type_error_and_a_key_error():
    with pytest.raises(TypeError) as info:
        ShareableList([1, {1: 2}])
    assert isinstance(info.value, KeyError)
    assert "not 'dict'" in str(info.value)
    assert not str(info.value).startswith("'")   # not KeyError's quoted message


def test_largest_str_item_is_accepted(make):
    sl = make(["x" * 9_999_991])
    assert sl._get_packing_format(0) == "9999992s"
    assert len(sl[0]) == 9_999_991


def test_iterators_and_generators_are_materialised_once(make):
    calls = []

    def gen():
        for i in range(5):
            calls.append(i)
            yield i * 2

    assert list(make(gen())) == [0, 2, 4, 6, 8]
    assert calls == [0, 1, 2, 3, 4]
    assert list(make(iter("abc"))) == ["a", "b", "c"]
    assert list(make(range(3))) == [0, 1, 2]
    assert list(make({1: "a"}.values())) == ["a"]


class Colour(enum.IntEnum):
    RED = 1


class MyStr(str):
    pass


def test_subclasses_and_numpy_scalars_are_stored_as_python_types(make):
    items = [Colour.RED, MyStr("s"), np.int64(-5), np.int8(3), np.uint32(7), np.float64(1.5),
             np.float32(0.25), np.bool_(True), np.bool_(False), np.uint64(2**63 - 1)]
    sl = make(items)
    assert sl.tolist() == [1, "s", -5, 3, 7, 1.5, 0.25, True, False, 2**63 - 1]
    assert [type(x) for x in sl] == [int, str, int, int, int, float, float, bool, bool, int]
    assert bytes(sl.shm.buf) == bytes(make(sl.tolist()).shm.buf)
    sl[0] = np.float64(2.0)
    sl[1] = np.int16(4)
    sl[2] = Colour.RED
    assert sl.tolist()[:3] == [2.0, 4, 1]


def test_longdouble_is_rejected(make):
    with pytest.raises(TypeError):
        make([np.longdouble(1.5)])


@pytest.mark.parametrize("name", ["bad\0name", "x" * 256, "a/b", "", "/"])
def test_bad_names_raise_value_error(name):
    before = segment_names()
    with pytest.raises(ValueError):
        ShareableList([1], name=name)
    with pytest.raises(ValueError):
        ShareableList(name=name)
    assert_no_new_segments(before)


def test_named_creation_and_name_clash(make):
    name = "psm_pyshl_test_%d" % os.getpid()
    sl = make([1, 2], name=name)
    assert sl.shm.name == name
    with pytest.raises(FileExistsError):
        ShareableList([3], name=name)
    assert sl.tolist() == [1, 2]


# 5. Attaching never registers with the resource tracker.
def test_attaching_process_never_unlinks(make):
    sl = make([1, 2, 3])
    proc = run_python(f"""
        from pyshl import ShareableList
        sl = ShareableList(name={sl.shm.name!r})
        sl[0] = 42
        # exit without closing: nothing may unlink the segment
    """)
    assert "leaked" not in proc.stderr
    assert sl[0] == 42
    again = ShareableList(name=sl.shm.name)
    assert again.tolist() == [42, 2, 3]
    again.close()


def test_creator_is_tracked_by_default_and_not_with_track_false():
    proc = run_python("""
        from pyshl import ShareableList
        tracked = ShareableList([1])
        untracked = ShareableList([2], track=False)
        print(tracked.shm.name, untracked.shm.name)
    """)
    tracked, untracked = proc.stdout.split()
    assert "1 leaked shared_memory" in proc.stderr   # the tracker cleaned up the creator's
    assert not os.path.exists("/dev/shm/" + tracked)
    assert os.path.exists("/dev/shm/" + untracked)
    sl = ShareableList(name=untracked)
    assert sl[0] == 2
    sl.close()
    sl.unlink()


def test_attach_with_track_true_takes_ownership():
    proc = run_python("""
        from pyshl import ShareableList
        sl = ShareableList([7], track=False)
        print(sl.shm.name)
    """)
    name = proc.stdout.strip()
    proc = run_python(f"""
        from pyshl import ShareableList
        sl = ShareableList(name={name!r}, track=True)
        assert sl[0] == 7
    """)
    assert not os.path.exists("/dev/shm/" + name)


# 7. No giant struct format caches.
def test_a_pickled_shared_memory_attaches_as_it_was_read_only_or_not(make):
    sl = make([1, 2])
    for readonly in (True, False):
        handle = SharedMemory(sl.shm.name, readonly=readonly)
        again = pickle.loads(pickle.dumps(handle))
        try:
            assert again.readonly is readonly and again.buf.readonly is readonly
            assert again.name == sl.shm.name and again.size == sl.shm.size
            assert not again._track            # attaching never registers
            if readonly:
                with pytest.raises(TypeError):
                    again.buf[0] = 1
        finally:
            again.close()
            handle.close()
    assert sl.tolist() == [1, 2]


def test_million_item_construction_memory():
    proc = run_python("""
        import resource
        from pyshl import ShareableList
        items = list(range(10**6)) + ["s" * 20] * 1000
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sl = ShareableList(items)
        sl.format; sl.count(-1); sl.tolist()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sl.close(); sl.unlink()
        print((after - before) // 1024)
    """)
    # The segment itself is 25 MiB and tolist() builds a million ints;
    # the standard library's format caches cost +340 MiB here.
    assert int(proc.stdout) < 120
