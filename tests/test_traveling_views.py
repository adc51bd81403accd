"""Views that travel: windows onto a segment pickle as a reference to it."""
import concurrent.futures
import multiprocessing
import os
import pickle
import sys
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest

from helpers import SHM_DIR, run_python, segment_exists
from pyshl import ShareableList, SharedMemory
from pyshl._views import SharedArray

METHODS = ["spawn", "fork", "forkserver"]


def test_a_million_item_view_pickles_in_a_few_bytes(make):
    sl = make(np.arange(1_000_000))
    assert len(pickle.dumps(sl.view())) < 2048
    assert len(pickle.dumps(sl.view(10, 20))) < 2048


@pytest.mark.parametrize("window", [
    lambda v: v, lambda v: v[3:9], lambda v: v[::3], lambda v: v[::-2], lambda v: v[5:1:-1],
    lambda v: v[7:8],
], ids=["all", "slice", "step", "reversed", "reversed-slice", "one"])
def test_unpickled_windows_land_on_the_same_slots(make, window):
    sl = make(list(range(20)))
    original = window(sl.view())
    copy = pickle.loads(pickle.dumps(original))
    assert isinstance(copy, SharedArray) and copy.tolist() == original.tolist()
    copy[...] = -7
    assert original.tolist() == [-7] * original.size
    assert sl.tolist().count(-7) == original.size


def test_bool_and_float_windows(make):
    flags = make([True, False, True, False])
    copy = pickle.loads(pickle.dumps(flags.view()[::2]))   # a stride-16 view of flag bytes
    copy[1] = False
    assert flags.tolist() == [True, False, False, False]
    floats = make([0.5, 1.5, 2.5])
    copy = pickle.loads(pickle.dumps(floats.view(1)))
    copy += 1
    assert floats.tolist() == [0.5, 2.5, 3.5]


def test_results_and_copies_are_ordinary_arrays_pickled_by_value(make):
    sl = make(list(range(10)))
    view = sl.view()
    for result in (view + 1, view * view, np.sqrt(view), view.copy(), view[[1, 2]]):
        again = pickle.loads(pickle.dumps(result))
        assert type(again) is np.ndarray and again.tolist() == result.tolist()
        again[...] = 99
        assert sl.tolist() == list(range(10))      # a private copy
    assert type(view + 1) is np.ndarray and type(view.copy()) is np.ndarray
    assert not isinstance(view.sum(), np.ndarray)
    np.add(view, 1, out=view)                        # in place: still the window
    assert sl.tolist() == list(range(1, 11))


def test_an_unpickled_window_keeps_its_mapping_and_never_tracks(make):
    sl = make([1, 2, 3])
    payload = pickle.dumps(sl.view())
    copy = pickle.loads(payload)
    sl.close()
    copy[0] = 10                                     # still mapped after the list closed
    proc = run_python("""
        import pickle
        window = pickle.loads(%r)
        window[1] = 20
    """ % payload)                                   # a process that only unpickles...
    assert "resource_tracker" not in proc.stderr and "leaked" not in proc.stderr
    assert segment_exists(sl.shm.name)               # ...never unlinks
    again = ShareableList(name=sl.shm.name)
    assert again.tolist() == [10, 20, 3]
    again.close()


def test_unpickling_after_unlink_names_the_segment():
    sl = ShareableList([1, 2])
    payload = pickle.dumps(sl.view())
    name = sl.shm.name
    sl.close()
    sl.unlink()
    with pytest.raises(FileNotFoundError, match=name):
        pickle.loads(payload)


def test_windows_of_a_read_only_list_stay_read_only(make):
    sl = make([1, 2, 3])
    ro = ShareableList(name=sl.shm.name, readonly=True)
    try:
        copy = pickle.loads(pickle.dumps(ro.view()))
        assert not copy.flags.writeable and copy.tolist() == [1, 2, 3]
    finally:
        ro.close()


def _fill(args):
    window, value = args
    window[...] = value
    return int(window.sum())


@pytest.mark.parametrize("method", METHODS)
def test_pool_workers_write_through_views(make, method):
    sl = make([0] * 40)
    view = sl.view()
    chunks = [(view[k:k + 10], k + 1) for k in range(0, 40, 10)]
    with multiprocessing.get_context(method).Pool(2) as pool:
        sums = pool.map(_fill, chunks)
    assert sums == [10 * (k + 1) for k in range(0, 40, 10)]
    assert sl.tolist() == [k // 10 * 10 + 1 for k in range(40)]


@pytest.mark.parametrize("method", METHODS)
def test_plain_array_windows_travel_through_multiprocessing(make, method):
    # np.asarray(sl) is a plain ndarray (NumPy drops the subclass): pyshl's
    # reducer for multiprocessing's pickler sends it by reference too.
    sl = make([0] * 8)
    with multiprocessing.get_context(method).Pool(1) as pool:
        pool.map(_fill, [(np.asarray(sl)[2:4], 5)])
        other = np.arange(3)
        assert pool.map(_fill, [(other, 1)]) == [3] and other.tolist() == [0, 1, 2]
    assert sl.tolist() == [0, 0, 5, 5, 0, 0, 0, 0]


def _add_into(window, k):
    np.add.at(window, [k, k, k], 1)
    return True


@pytest.mark.skipif(sys.version_info < (3, 7),
                    reason="ProcessPoolExecutor takes mp_context from Python 3.7")
@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor_workers_aggregate_through_a_view(make, method):
    sl = make([0] * 16)
    view = sl.view()
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        assert all(executor.map(_add_into, [view[k:k + 4] for k in range(0, 16, 4)],
                                [1] * 4))
    assert sl.tolist() == [0, 3, 0, 0] * 4


# -- a window must land on the slots it was made onto, or fail -------------------

def _replace(sl, make, items):
    """Unlink sl's segment and create a list of `items` under the same name."""
    name = sl.shm.name
    sl.close()
    sl.unlink()
    return make(items, name=name)


def test_a_window_onto_a_replaced_list_refuses_to_map(make):
    sl = make([1, 2, 3, 4])
    payload = pickle.dumps(sl.view(1, 3))
    new = _replace(sl, make, ["a string", 5.5, None, b"bytes", 6])
    before = bytes(new.shm.buf)
    with pytest.raises(ValueError, match="was replaced since this window was made"):
        pickle.loads(payload)
    assert bytes(new.shm.buf) == before


def test_an_identical_list_under_the_same_name_is_another_segment(make):
    # Same size, same items, same bytes: only the file's identity tells them apart.
    sl = make([1, 2, 3, 4])
    payload = pickle.dumps(sl.view())
    new = _replace(sl, make, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="was replaced"):
        pickle.loads(payload)
    assert new.tolist() == [1, 2, 3, 4]


def test_a_replaced_list_is_refused_in_another_process(make):
    sl = make([0] * 8)
    payload = pickle.dumps(sl.view(2, 6))
    new = _replace(sl, make, ["abcdefgh"] * 4 + [0] * 4)
    before = bytes(new.shm.buf)
    proc = run_python("""
        import pickle
        try:
            window = pickle.loads(%r)
        except ValueError as exc:
            print(exc)
        else:
            window[...] = -1
    """ % payload)
    assert "was replaced" in proc.stdout
    assert bytes(new.shm.buf) == before


def test_a_window_whose_slots_now_hold_str_refuses_to_map(make):
    sl = make([1, 2, 3, 4])
    payload = pickle.dumps(sl.view(1, 3))
    new = _replace(sl, make, [1, "ab", "cd", 4])       # str where the ints were
    before = bytes(new.shm.buf)
    with pytest.raises(ValueError):
        pickle.loads(payload)
    assert bytes(new.shm.buf) == before


@pytest.mark.parametrize("items, index, value", [
    ([1, 2, 3, 4], 2, "ab"), ([0.5, 1.5, 2.5], 1, 7), ([True, False, True], 0, None),
], ids=["int-to-str", "float-to-int", "bool-to-None"])
def test_a_window_whose_slots_changed_kind_in_place_refuses_to_map(make, items, index, value):
    # The same segment: its identity matches, but its slots are no longer the window's.
    sl = make(items)
    payload = pickle.dumps(sl.view())
    sl[index] = value
    before = bytes(sl.shm.buf)
    with pytest.raises(ValueError, match="no longer the .* slots this window was made onto"):
        pickle.loads(payload)
    assert bytes(sl.shm.buf) == before


def test_a_window_whose_slots_changed_kind_refuses_to_pickle(make):
    sl = make([1, 2, 3, 4])
    stale = sl.view()
    sl[3] = "ab"                    # the window now covers a str's bytes
    with pytest.raises(ValueError, match="no longer numbers of one kind"):
        pickle.dumps(stale)
    with pytest.raises(ValueError, match="no longer numbers of one kind"):
        ForkingPickler.dumps(np.asarray(stale))
    assert pickle.loads(pickle.dumps(stale[:3])).tolist() == [1, 2, 3]


def test_a_segment_that_no_longer_reads_as_a_list_refuses_to_map(make):
    sl = make([1, 2, 3])
    payload = pickle.dumps(sl.view())
    header = bytes(sl.shm.buf[:8])
    sl.shm.buf[:8] = (10 ** 9).to_bytes(8, sys.byteorder)   # an item count that cannot fit
    try:
        with pytest.raises(ValueError, match="no longer holds the ShareableList"):
            pickle.loads(payload)
    finally:
        sl.shm.buf[:8] = header


def test_structured_windows_keep_their_fields(make):
    sl = make(list(range(8)))
    pairs = sl.view(2, 8).view([("lo", "<i8"), ("hi", "<i8")])
    copy = pickle.loads(pickle.dumps(pairs))
    assert copy.dtype == pairs.dtype and copy.dtype.names == ("lo", "hi")
    assert copy["lo"].tolist() == [2, 4, 6] and copy["hi"].tolist() == [3, 5, 7]
    copy["hi"] = -1
    assert sl.tolist() == [0, 1, 2, -1, 4, -1, 6, -1]


def test_windows_onto_a_raw_segment_travel_and_refuse_a_replacement():
    # A plain array over a SharedMemory's buffer travels by reference through
    # multiprocessing's pickler; the replacement check needs no list.
    shm = SharedMemory(create=True, size=64)
    try:
        window = np.ndarray((4,), np.int32, buffer=shm.buf, offset=8)
        copy = pickle.loads(ForkingPickler.dumps(window))
        copy[...] = 9
        assert window.tolist() == [9] * 4
        payload = ForkingPickler.dumps(window)
        del window, copy
    finally:
        shm.close()
        shm.unlink()
    again = SharedMemory(shm.name, create=True, size=64)   # same name, same size
    try:
        with pytest.raises(ValueError, match="was replaced"):
            pickle.loads(payload)
        assert bytes(again.buf) == bytes(64)
    finally:
        again.close()
        again.unlink()


def test_a_window_onto_a_resized_segment_refuses_to_map():
    shm = SharedMemory(create=True, size=64)
    try:
        payload = ForkingPickler.dumps(np.ndarray((4,), np.int64, buffer=shm.buf))
        os.truncate(os.path.join(SHM_DIR, shm.name.lstrip("/")), 128)   # same file, grown
        with pytest.raises(ValueError, match="was resized"):
            pickle.loads(payload)
    finally:
        shm.close()
        shm.unlink()


def test_a_window_onto_unwritten_pages_refuses_to_unpickle():
    # A sparse segment (ftruncate alone): reading its holes on tmpfs allocates
    # pages, and kills the reader with SIGBUS once /dev/shm is full.
    name = "psm_sparse_window_%d" % os.getpid()
    fd = os.open(os.path.join("/dev/shm", name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, 1 << 20)
        os.pwrite(fd, b"\1" * 64, 0)                 # only the first page is written
        shm = SharedMemory(name)
        blocks = os.fstat(fd).st_blocks
        window = np.ndarray((16,), np.int64, buffer=shm.buf, offset=8192)   # never touched
        payload = ForkingPickler.dumps(window)      # by reference: reads no slot
        with pytest.raises(ValueError, match="unwritten pages"):
            pickle.loads(payload)
        assert os.fstat(fd).st_blocks == blocks     # no page was allocated
        del window
        shm.close()
    finally:
        os.close(fd)
        os.unlink(os.path.join("/dev/shm", name))


def test_windows_onto_reserved_pages_of_a_new_segment_travel():
    # pyshl reserves a new segment's pages (posix_fallocate): reading them
    # allocates nothing, though the kernel calls them holes until written.
    shm = SharedMemory(create=True, size=1 << 20)
    try:
        out = np.ndarray((1 << 17,), np.int64, buffer=shm.buf)
        chunk = ForkingPickler.loads(ForkingPickler.dumps(out[60000:70000]))   # never written
        chunk[:] = 7
        assert out[60000] == out[69999] == 7 and out[59999] == out[70000] == 0
        del out, chunk
    finally:
        shm.close()
        shm.unlink()
