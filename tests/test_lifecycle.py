"""close(), unlink(), context management and the lifetime of the mapping."""
import gc
import multiprocessing
import os
import pickle

import numpy as np
import pytest

import pyshl
from helpers import run_python, segment_exists
from pyshl import ShareableList


def mapped(name):
    """Is a segment with this name mapped into this process?"""
    with open("/proc/self/maps") as maps:
        return any(line.rstrip().replace(" (deleted)", "").endswith("/dev/shm/" + name)
                   for line in maps)


def test_shm_is_a_stdlib_shared_memory(make):
    sl = make([1])
    try:
        from multiprocessing.shared_memory import SharedMemory as StdSharedMemory
    except ImportError:       # Python 3.7: pyshl.SharedMemory stands alone
        StdSharedMemory = pyshl.SharedMemory
    assert isinstance(sl.shm, StdSharedMemory)
    assert isinstance(sl.shm, pyshl.SharedMemory)
    assert sl.shm.size == len(sl.shm.buf) == 8 * 3 + 8 + 9


@pytest.mark.parametrize("order", ["close-unlink", "unlink-close"])
def test_close_and_unlink_in_either_order(order):
    sl = ShareableList([1, "a"])
    name = sl.shm.name
    for step in order.split("-"):
        getattr(sl, step)()
    assert not segment_exists(name)
    sl.close()   # idempotent
    with pytest.raises(FileNotFoundError):
        sl.unlink()


def test_unlinked_list_stays_usable_until_closed():
    sl = ShareableList([1, 2])
    sl.unlink()
    sl[0] = 5
    assert sl.tolist() == [5, 2]
    sl.close()


OPERATIONS = [
    lambda sl: sl[0], lambda sl: sl.__setitem__(0, 1), lambda sl: len(sl), lambda sl: list(sl),
    lambda sl: sl.count(1), lambda sl: sl.index(1), lambda sl: 1 in sl, lambda sl: sl.format,
    lambda sl: sl._get_packing_format(0), lambda sl: sl.tolist(), lambda sl: iter(sl),
    lambda sl: sl.count(object()),
]


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("closer", ["list", "shm"])
def test_every_access_after_close_raises_value_error(make, op, closer):
    sl = make([1, "two", 3.0])
    (sl if closer == "list" else sl.shm).close()
    assert sl.closed
    with pytest.raises(ValueError, match="closed"):
        op(sl)
    assert "closed" in repr(sl)


def test_iterator_stops_working_after_close(make):
    sl = make([1, 2, 3])
    it = iter(sl)
    assert next(it) == 1
    sl.close()
    with pytest.raises(ValueError):
        next(it)


def test_context_manager_unlinks_only_what_it_created():
    with ShareableList([1, 2]) as sl:
        name = sl.shm.name
        with ShareableList(name=name) as attached:
            assert attached.tolist() == [1, 2]
        assert attached.closed and segment_exists(name)
        sl[0] = 3
    assert sl.closed and not segment_exists(name)


def test_context_manager_tolerates_an_earlier_unlink():
    with ShareableList([1]) as sl:
        sl.unlink()
    assert sl.closed


def test_arrays_over_shm_buf_survive_close_in_a_child():
    # np.ndarray(buffer=...) releases its buffer at once and keeps only the
    # object: the memory must stay mapped for as long as the array lives.
    out = run_python("""
        import numpy as np
        from pyshl import ShareableList
        sl = ShareableList(list(range(8)))
        a = np.ndarray((8,), np.uint8, buffer=sl.shm.buf)
        v = sl.view()
        sl.shm.close()
        sl.close()
        sl.unlink()
        del sl
        assert a[0] == 8 and v[7] == 7
        a[1] = 1
        v[0] = 5
        print("ok")
    """)
    assert out.stdout == "ok\n"


def test_stdlib_idiom_close_then_unlink_with_live_views():
    sl = ShareableList(list(range(100)))
    name = sl.shm.name
    buf = sl.shm.buf
    window = sl.shm.buf[8:16]
    array = np.frombuffer(sl.shm.buf, dtype=np.uint8)
    sl.shm.close()            # the stdlib raises BufferError here
    sl.shm.unlink()
    assert not segment_exists(name)
    assert array[0] == 100    # the item count, still readable: nothing dangles
    assert window.tobytes() == bytes(8)
    with pytest.raises(ValueError):
        buf[0]                # shm.buf itself is released, as the stdlib does
    assert mapped(name)
    del array
    gc.collect()
    assert mapped(name)       # the window still holds the mapping...
    del window
    gc.collect()
    assert not mapped(name)   # ...and it goes with the last view


def test_ndarray_over_buf_survives_close(make):
    # With the stdlib, np.ndarray(buffer=shm.buf) lets close() succeed and
    # the next read segfaults.
    sl = make([5, 6, 7])
    array = np.ndarray((3,), dtype=np.int64, buffer=sl.shm.buf, offset=8 * 5)
    sl.close()
    assert array.tolist() == [5, 6, 7]
    array[0] = 9
    del array
    again = ShareableList(name=sl.shm.name)
    assert again[0] == 9
    again.close()


def test_close_releases_the_mapping_without_views():
    sl = ShareableList([1])
    name = sl.shm.name
    assert mapped(name)
    sl.close()
    assert not mapped(name)
    sl.unlink()


def test_closed_buf_refuses_new_views(make):
    sl = make([1])
    shm = sl.shm
    mapping = shm._mmap
    sl.close()
    assert shm.buf is None
    with pytest.raises(ValueError):
        mapping.export()
    with pytest.raises(TypeError):
        memoryview(mapping)      # buffers come only from Exports, which count as users


def test_attach_close_loop_holds_no_descriptors(make):
    sl = make(list(range(10)))
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(2000):
        ShareableList(name=sl.shm.name).close()
    assert len(os.listdir("/proc/self/fd")) <= fds


def test_shared_memory_api(make):
    shm = pyshl.SharedMemory(create=True, size=100)
    try:
        assert shm.size == 100 and len(shm.buf) == 100
        other = pyshl.SharedMemory(shm.name)
        other.buf[3] = 7
        assert shm.buf[3] == 7
        other.close()
        assert "SharedMemory(" in repr(shm)
        with pytest.raises(ValueError):
            pyshl.SharedMemory(create=True, size=0)
        with pytest.raises(ValueError):
            pyshl.SharedMemory(create=True, size=-1)
        with pytest.raises(TypeError):
            pyshl.SharedMemory(create=True, size=1.5)
        with pytest.raises(ValueError):
            pyshl.SharedMemory()
        with pytest.raises(FileNotFoundError):
            pyshl.SharedMemory("psm_does_not_exist_%d" % os.getpid())
    finally:
        shm.close()
        shm.unlink()


def test_segment_mode_is_0600(make):
    sl = make([1])
    assert os.stat("/dev/shm/" + sl.shm.name).st_mode & 0o777 == 0o600


def _child_adds(sl, delta):
    sl[0] = sl[0] + delta
    sl[1] = "from child"


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_pickled_list_attaches_in_child_processes(make, method):
    sl = make([10, "x" * 16])
    ctx = multiprocessing.get_context(method)
    proc = ctx.Process(target=_child_adds, args=(sl, 5))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert sl.tolist() == [15, "from child"]


def test_attached_handle_can_be_closed_from_another_process_safely(make):
    sl = make([1, 2, 3])
    run_python(f"""
        from pyshl import ShareableList
        sl = ShareableList(name={sl.shm.name!r})
        sl.close()
        try:
            sl[0]
        except ValueError:
            pass
        else:
            raise SystemExit("read after close")
    """)
    assert sl.tolist() == [1, 2, 3]


def test_calling_init_again_is_refused(make):
    sl = make([1, 2])
    name = sl.shm.name
    with pytest.raises(RuntimeError, match="already bound"):
        sl.__init__([3])
    with pytest.raises(RuntimeError, match="already bound"):
        sl.__init__(name=name)
    assert sl.shm.name == name and sl.tolist() == [1, 2]


def test_readonly_attach_reads_and_refuses_writes(make):
    sl = make([1, 2.5, "text", None])
    ro = ShareableList(name=sl.shm.name, readonly=True)
    try:
        assert ro.readonly and not sl.readonly
        assert ro.tolist() == [1, 2.5, "text", None] and ro.count(1) == 1
        sl[0] = 7
        assert ro[0] == 7 and ro.load(0) == 7          # a live view of the segment
        writes = [lambda: ro.__setitem__(0, 1), lambda: ro.__setitem__(slice(0, 1), [1]),
                  lambda: ro.fetch_add(0, 1), lambda: ro.compare_exchange(0, 7, 8),
                  lambda: ro.store(0, 1), lambda: ro.add_at([0], 1)]
        for write in writes:
            with pytest.raises(TypeError, match="readonly"):
                write()
        assert sl.tolist() == [7, 2.5, "text", None]
        assert ro.shm.buf.readonly
        with pytest.raises(TypeError):
            ro.shm.buf[0] = 1
        assert not ShareableList(name=sl.shm.name, readonly=True).view(0, 1).flags.writeable
        again = pickle.loads(pickle.dumps(ro))
        assert again.readonly
        again.close()
    finally:
        ro.close()
    with pytest.raises(ValueError, match="attaches"):
        ShareableList([1], readonly=True)
    with pytest.raises(ValueError, match="only attaches"):
        pyshl.SharedMemory(create=True, size=8, readonly=True)
