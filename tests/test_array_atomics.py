"""fetch_add, compare_exchange and add_at on shared arrays' elements: NumPy's
results, every check before any write, callbacks, threads and processes."""
import sys
import sysconfig
import threading

import numpy as np
import pytest

import pyshl
from helpers import run_processes

INTS = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]
FLOATS = ["f4", "f8"]


@pytest.mark.parametrize("dtype", INTS + FLOATS)
def test_fetch_add_returns_the_old_value_and_wraps_as_numpy(shared, dtype):
    a = shared(pyshl.zeros, (3, 4), dtype)
    info = np.iinfo(dtype) if dtype in INTS else None
    start = int(info.max) - 1 if info else 2.5
    a[1, 2] = start
    old = pyshl.fetch_add(a, (1, 2), 3 if info else 0.25)
    assert old == start and type(old) is (int if info else float)
    expected = np.array([start], dtype) + np.array([3 if info else 0.25], dtype)
    assert a[1, 2] == expected[0]
    assert pyshl.fetch_add(a[1], -2, 1) == a[1, 2] - 1
    assert a.sum() == expected[0] + 1


@pytest.mark.parametrize("dtype", INTS + FLOATS)
def test_compare_exchange(shared, dtype):
    a = shared(pyshl.full, 5, 3, dtype)
    assert not pyshl.compare_exchange(a, 2, 4, 9) and a[2] == 3
    assert pyshl.compare_exchange(a, -3, 3, 9) and a[2] == 9


def test_float_compare_exchange_compares_as_python(shared):
    a = shared(pyshl.zeros, 2, np.float32)
    assert pyshl.compare_exchange(a, 0, -0.0, 1.5) and a[0] == 1.5
    a[1] = np.nan
    assert not pyshl.compare_exchange(a, 1, float("nan"), 0.0)


@pytest.mark.parametrize("call, error, match", [
    (lambda a: pyshl.fetch_add(a, 10, 1), IndexError, "out of bounds"),
    (lambda a: pyshl.fetch_add(a, -11, 1), IndexError, "out of bounds"),
    (lambda a: pyshl.fetch_add(a, 2**70, 1), IndexError, "out of bounds"),
    (lambda a: pyshl.fetch_add(a, (1, 2), 1), IndexError, "one index per axis"),
    (lambda a: pyshl.fetch_add(a, 1.0, 1), TypeError, "index"),
    (lambda a: pyshl.fetch_add(a, 1, 1.5), TypeError, "float"),
    (lambda a: pyshl.fetch_add(a, 1, 128), OverflowError, "int8"),
    (lambda a: pyshl.fetch_add(a, 1, -129), OverflowError, "int8"),
    (lambda a: pyshl.fetch_add(a, 1, 2**64), OverflowError, "64 bits"),
    (lambda a: pyshl.fetch_add(a, 1, "1"), TypeError, "int or a float"),
    (lambda a: pyshl.compare_exchange(a, 1, 0, 200), OverflowError, "int8"),
    (lambda a: pyshl.fetch_add([1, 2], 0, 1), TypeError, "NumPy array"),
    (lambda a: pyshl.fetch_add(np.zeros(3, complex), 0, 1), TypeError, "int8"),
    (lambda a: pyshl.fetch_add(np.zeros(3, ">i4"), 0, 1), TypeError, "native"),
    (lambda a: pyshl.fetch_add(np.zeros(3, "?"), 0, 1), TypeError, "int8"),
    (lambda a: pyshl.fetch_add(np.zeros(9, np.uint8)[1:].view(np.int32)[:1], 0, 1),
     ValueError, "aligned"),
])
def test_element_atomics_check_their_arguments(shared, call, error, match):
    a = shared(pyshl.zeros, 10, np.int8)
    with pytest.raises(error, match=match):
        call(a)
    assert not a.any()


def test_fetch_add_takes_numpy_scalars_and_any_array(shared):
    a = shared(pyshl.zeros, 4, np.uint64)
    assert pyshl.fetch_add(a, np.int64(3), np.uint64(2**64 - 1)) == 0
    assert a[3] == 2**64 - 1
    private = np.zeros(3, np.int16)
    assert pyshl.fetch_add(private, 1, 7) == 0 and private[1] == 7


def test_the_list_functions_still_serve_lists(make):
    sl = make([0, 0.5, 7])
    assert pyshl.fetch_add(sl, 0, 2) == 0 and sl[0] == 2
    assert pyshl.compare_exchange(sl, 2, 7, 8) and sl[2] == 8
    pyshl.add_at(sl, [0, 0, 1], 1)
    assert sl.tolist() == [4, 1.5, 8]
    with pytest.raises(OverflowError):       # the list's contract: int64 never wraps
        pyshl.add_at(sl, [2], 2**63 - 1)


# -- add_at ---------------------------------------------------------------------

def _both(shared, shape, dtype, indices, values, start=None):
    """pyshl.add_at and np.add.at on equal arrays; returns both."""
    rng = np.random.default_rng(1)
    if start is None:
        start = (rng.integers(-100, 100, size=shape) if np.dtype(dtype).kind in "iu"
                 else rng.standard_normal(shape))
    start = np.asarray(start)
    if np.dtype(dtype).kind == "u":
        # (NumPy adds an int to a uint64 in float64: kept exact, small values.)
        start = np.array(np.abs(start))
    start = start.astype(dtype)
    a = shared(pyshl.array, start)
    expected = start.copy()
    np.add.at(expected, indices, values)
    pyshl.add_at(a, indices, values)
    return a, expected


@pytest.mark.parametrize("dtype", INTS + FLOATS)
def test_add_at_matches_numpy_1d(shared, dtype):
    rng = np.random.default_rng(2)
    idx = rng.integers(-50, 50, size=5000)
    for values in (1, rng.integers(0, 100, size=5000).astype(dtype)):
        a, expected = _both(shared, 50, dtype, idx, values)
        if dtype in FLOATS:       # sums rounded per target, not per update
            np.testing.assert_allclose(a, expected, rtol=1e-5)
        else:
            assert a.tolist() == expected.tolist()


def test_python_ints_wrap_as_numpy_does(shared):
    a, expected = _both(shared, 3, np.uint8, [0, 0, 2], 300, start=[0, 0, 0])
    assert a.tolist() == expected.tolist() == [88, 0, 44]
    a, expected = _both(shared, 3, np.uint8, [0, 1], -1, start=[5, 0, 0])
    assert a.tolist() == expected.tolist() == [4, 255, 0]
    b = shared(pyshl.full, 2, 1, np.int64)
    pyshl.add_at(b, [0], 2**64 - 1)               # wraps to -1
    assert b.tolist() == [0, 1]
    for too_big in (2**64, -2**63 - 1, 2**70):
        with pytest.raises(OverflowError):
            pyshl.add_at(b, [0], too_big)
    assert b.tolist() == [0, 1]


@pytest.mark.parametrize("dtype", ["i1", "u2", "i4", "u8"])
def test_add_at_integers_wrap_as_numpy_does(shared, dtype):
    info = np.iinfo(dtype)
    idx = np.array([0, 0, 1, 2, 2, 2])
    a, expected = _both(shared, 3, dtype, idx, np.array([info.max] * 6, dtype),
                        start=[info.max, info.min, 5])
    assert a.tolist() == expected.tolist()


@pytest.mark.parametrize("case", [
    lambda: ((4, 5), [0, 3, 3, -1], np.arange(20).reshape(4, 5)),        # rows
    lambda: ((4, 5), [1, 1], 2),
    lambda: ((4, 5), ([0, 3, 3], [1, -1, -1]), [10, 20, 30]),             # elements
    lambda: ((4, 5), (np.array([[0], [1]]), np.array([1, 2, 3])), 1),     # broadcast indices
    lambda: ((2, 3, 4), ([1, 1, 0],), np.ones((3, 3, 4))),
    lambda: ((2, 3, 4), ([1, 0], [2, 2]), np.arange(4)),                 # trailing axis
    lambda: ((), (), 5),
    lambda: ((6,), np.array([], np.int64), 3),
    lambda: ((6,), [], []),
])
@pytest.mark.parametrize("dtype", ["i4", "u1", "f4", "f8"])
def test_add_at_matches_numpy_nd(shared, case, dtype):
    shape, indices, values = case()
    values = np.asarray(values)
    if np.dtype(dtype).kind in "iu":
        values = values.astype(np.int64)
    a, expected = _both(shared, shape, dtype, indices, values)
    np.testing.assert_allclose(a, expected, rtol=1e-6)


@pytest.mark.parametrize("window", [
    lambda a: a[::-1], lambda a: a[2:9:3], lambda a: a.reshape(4, 3).T, lambda a: a[::-2][1:],
], ids=["reversed", "stepped", "transposed", "reversed-stepped"])
def test_add_at_into_windows(shared, window):
    base = np.arange(12, dtype=np.int32)
    a = shared(pyshl.array, base)
    target, expected_target = window(a), window(base.copy())
    idx = np.array([0, 1, 1, -1])
    if target.ndim == 2:
        idx = (np.array([0, 1, 1, -1]), np.array([2, 0, 0, 1]))
    expected = base.copy()
    np.add.at(window(expected), idx, 5)
    pyshl.add_at(target, idx, 5)
    assert a.tolist() == expected.tolist()
    del expected_target


def test_float_sums_are_combined_per_target(shared):
    # What the aggregation guide says: each target's updates are summed privately
    # (starting from -0.0), then added once.
    a = shared(pyshl.zeros, 1, np.float64)
    a[0] = 2.0**53
    pyshl.add_at(a, [0, 0], 1.0)
    assert a[0] == 2.0**53 + 2           # np.add.at: 2**53 (each +1 rounds away)
    b = shared(pyshl.full, 1, -0.0)
    pyshl.add_at(b, [0], -0.0)
    assert np.signbit(b[0])


@pytest.mark.parametrize("call, error, match", [
    (lambda a: pyshl.add_at(a, [0, 10], 1), IndexError, "index 10 is out of bounds"),
    (lambda a: pyshl.add_at(a, [0, -11], 1), IndexError, "out of bounds"),
    (lambda a: pyshl.add_at(a, np.array([0, 2**63 + 5], np.uint64), 1), IndexError, "out of"),
    (lambda a: pyshl.add_at(a, [0.5], 1), TypeError, "integer"),
    (lambda a: pyshl.add_at(a, [0, 1], [1, 2, 3]), ValueError, "broadcast"),
    (lambda a: pyshl.add_at(a, [0], 1.5), TypeError, "truncate"),
    (lambda a: pyshl.add_at(a, [0], np.ones(1)), TypeError, "adds integers"),
    (lambda a: pyshl.add_at(a, ([0], [0]), 1), IndexError, "too many indices"),
    (lambda a: pyshl.add_at(a, [0], "x"), TypeError, "adds integers"),
    (lambda a: pyshl.add_at(a.astype(np.float32), [0], 1j), TypeError, "real numbers"),
    (lambda a: pyshl.add_at(np.zeros(2, object), [0], 1), TypeError, "int8"),
])
def test_add_at_checks_everything_before_adding_anything(shared, call, error, match):
    a = shared(pyshl.zeros, 10, np.int16)
    with pytest.raises(error, match=match):
        call(a)
    assert not a.any()


def test_misaligned_windows_are_refused(shared):
    raw = shared(pyshl.zeros, 40, np.uint8)
    window = raw[1:33].view(np.int32)         # every element straddles its natural place
    with pytest.raises(ValueError, match="aligned"):
        pyshl.add_at(window, [0], 1)
    with pytest.raises(ValueError, match="aligned"):
        pyshl.fetch_add(window, 0, 1)
    assert not raw.any()


def test_large_spread_targets_take_the_direct_path(shared):
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 1_000_000, size=200_000)
    a, expected = _both(shared, 1_000_000, np.float32, idx, 0.5, start=np.zeros(1_000_000))
    assert a.tolist() == expected.tolist()
    b, expected = _both(shared, 1_000_000, np.int32, idx, 3, start=np.zeros(1_000_000))
    assert b.tolist() == expected.tolist()


# -- Python code in the middle ------------------------------------------------------

class _Sneaky:
    def __init__(self, action, value=1):
        self.action, self.value = action, value

    def __index__(self):
        self.action()
        return self.value


def test_a_callback_that_retypes_the_array_is_survived(shared):
    a = shared(pyshl.zeros, 8, np.int64)
    window = a[:]
    # __index__ turns the window into float64 before fetch_add reads its dtype.
    old = pyshl.fetch_add(window, _Sneaky(lambda: setattr(window, "dtype", np.float64)), 1)
    assert old == 0.0 and window[1] == 1.0          # done as float64: what it is now
    window2 = a[:]

    class Indices:
        def __array__(self, dtype=None, copy=None):
            window2.shape = (2, 4)
            return np.array([0, 1])

    with pytest.raises((RuntimeError, IndexError)):
        pyshl.add_at(window2, Indices(), 1)
    assert a.view(np.int64).tolist()[2:] == [0] * 6


def test_a_callback_that_drops_every_other_reference_is_survived():
    a = pyshl.zeros(4, np.int64)
    holder = [a]
    del a

    def drop():
        holder[0].unlink()
        holder.clear()

    target = holder[0]
    assert pyshl.fetch_add(target, _Sneaky(drop), 5) == 0
    assert target[1] == 5


# -- threads and processes ------------------------------------------------------

def test_threads_lose_no_update(shared):
    a = shared(pyshl.zeros, 64, np.int32)
    f = shared(pyshl.zeros, 4, np.float64)
    rng = np.random.default_rng(3)
    batches = [rng.integers(0, 64, size=20000) for _ in range(8)]

    def work(idx):
        for _ in range(5):
            pyshl.add_at(a, idx, 1)
        for _ in range(2000):
            pyshl.fetch_add(a, 0, 1)
            pyshl.fetch_add(f, 3, 0.5)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.sum() == 8 * 5 * 20000 + 8 * 2000 and f[3] == 8 * 2000 * 0.5


def _worker_adds(name, seed):
    a = pyshl.attach(name)
    idx = np.random.default_rng(seed).integers(0, 256, size=100_000)
    for _ in range(10):
        pyshl.add_at(a, idx, 1)
    for _ in range(5000):
        pyshl.fetch_add(a, 7, 1)


@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_processes_lose_no_update(shared, method):
    a = shared(pyshl.zeros, 256, np.int32)
    run_processes(method, [(_worker_adds, (a.name, k)) for k in range(4)])
    expected = np.zeros(256, np.int64)
    for k in range(4):
        np.add.at(expected, np.random.default_rng(k).integers(0, 256, size=100_000), 10)
    expected[7] += 4 * 5000
    assert a.tolist() == expected.tolist()


# -- what a review found ------------------------------------------------------------

def test_a_failed_spread_add_at_adds_nothing_while_another_thread_edits_indices(shared):
    a = shared(pyshl.zeros, 1_000_000, np.float64)
    idx = np.arange(0, 1_000_000, 2)          # spread: update by update
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            idx[-1] = 10**7                   # out of range ...
            idx[-1] = 999_998                 # ... and back

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        total = 0.0
        for _ in range(60):
            try:
                pyshl.add_at(a, idx, 1.0)
            except IndexError:
                pass
            now = float(a.sum())
            assert now - total in (0.0, float(idx.size))     # all or nothing
            total = now
    finally:
        stop.set()
        flipper.join()


@pytest.mark.skipif(sys.version_info >= (3, 12)
                    or bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
                    reason="from Python 3.12 on, the garbage collector runs between bytecodes, "
                           "not inside a C call's allocations, which this test needs")
def test_a_finalizer_that_retypes_the_array_mid_add_at_is_caught(shared):
    import gc
    a = shared(pyshl.zeros, 64, np.int64)
    window = a[:]
    armed = []

    def retype(phase, info):
        if armed and phase == "start":
            armed.clear()
            window.dtype = np.int16

    idx = np.arange(8)
    threshold = gc.get_threshold()
    gc.callbacks.append(retype)
    gc.set_threshold(1)
    try:
        with pytest.raises(RuntimeError, match="changed"):
            armed.append(True)              # (armed here: pytest.raises allocates)
            pyshl.add_at(window, idx, 1)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(retype)
    assert not a.any()


def test_unlink_leaves_a_segment_that_took_the_name(shared):
    with pyshl.zeros(4, name="psm_test_took_the_name") as a:
        pyshl.attach(a.name).unlink()
        b = pyshl.zeros(8, name="psm_test_took_the_name", track=False)
        with pytest.raises(FileNotFoundError):
            a.unlink()
    try:
        assert pyshl.attach("psm_test_took_the_name").shape == (8,)
    finally:
        b.unlink()


def test_subarray_dtypes_become_axes(shared):
    a = shared(pyshl.zeros, 3, "(2,)f8")
    assert a.shape == (3, 2) and a.dtype == np.float64
    assert pyshl.attach(a.name).shape == (3, 2)


def test_float_compare_exchange_with_an_int_no_float_equals(shared):
    a = shared(pyshl.full, 1, 2.0**53)
    assert not pyshl.compare_exchange(a, 0, 2**53 + 1, 7.0) and a[0] == 2.0**53
    assert pyshl.compare_exchange(a, 0, 2**53, 7.0) and a[0] == 7.0


def test_numpy_bools_are_ints(shared):
    a = shared(pyshl.zeros, 2, np.int32)
    assert pyshl.fetch_add(a, 0, np.True_) == 0 and a[0] == 1


def test_huge_spans_do_not_overflow(shared):
    base = shared(pyshl.zeros, 1, np.float32)
    huge = np.lib.stride_tricks.as_strided(base, shape=(2**61 - 1,), strides=(0,),
                                           writeable=True)
    pyshl.add_at(huge, [0, 2**61 - 2], 1.0)
    assert base[0] == 2.0


def test_values_with_more_axes_than_targets_are_refused(shared):
    a = shared(pyshl.zeros, 4, np.int32)
    with pytest.raises(ValueError):
        pyshl.add_at(a, [0, 1], np.ones((1, 2), np.int32))
    assert not a.any()


@pytest.mark.parametrize("bad", [100_000, -100_001, 2**62])
def test_a_long_array_checks_every_index_first(shared, bad):
    a = shared(pyshl.zeros, 100_000, np.int32)       # longer than one private table
    for idx in ([0, 5, bad], np.r_[np.arange(0, 100_000, 7), bad]):
        with pytest.raises(IndexError, match="index %d is out of bounds" % bad):
            pyshl.add_at(a, np.asarray(idx), 1)
        assert not a.any()
