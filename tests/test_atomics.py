"""Lock-free atomic updates: exact totals from many processes, no torn values."""
import math
import multiprocessing
import pickle
import time

import numpy as np
import pytest

import pyshl
from helpers import run_processes, run_python

WORKERS = 4
BINS = 16


def _fetch_add_worker(sl, worker, updates):
    for j in range(updates):
        sl.fetch_add((worker * 7 + j) % BINS, 1)


def _float_fetch_add_worker(sl, worker, updates):
    for j in range(updates):
        sl.fetch_add(j % BINS, 2.0)       # integers in floats: the sum is exact


def _add_at_worker(sl, worker, updates):
    rng = np.random.default_rng(worker)
    for _ in range(4):
        bins = rng.integers(0, BINS, updates // 4)
        sl.add_at(bins, 1)
        sl.add_at(bins, -np.ones(len(bins), dtype=np.int8))   # and take them away again
        sl.add_at(bins, 3)


def _run_workers(method, target, sl, updates):
    run_processes(method, [(target, (sl, w, updates)) for w in range(WORKERS)])


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_fetch_add_from_many_processes_loses_nothing(make, method):
    sl = make([0] * BINS)
    _run_workers(method, _fetch_add_worker, sl, 20_000)
    assert sum(sl) == WORKERS * 20_000
    expected = np.zeros(BINS, dtype=np.int64)
    for w in range(WORKERS):
        np.add.at(expected, (w * 7 + np.arange(20_000)) % BINS, 1)
    assert sl.tolist() == expected.tolist()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_float_fetch_add_from_many_processes_loses_nothing(make, method):
    sl = make([0.0] * BINS)
    _run_workers(method, _float_fetch_add_worker, sl, 16_000)
    assert sl.tolist() == [2.0 * WORKERS * 16_000 / BINS] * BINS


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_add_at_from_many_processes_loses_nothing(make, method):
    sl = make([0] * BINS + [0.0] * BINS)
    _run_workers(method, _add_at_worker, sl, 200_000)
    expected = np.zeros(BINS, dtype=np.int64)
    for w in range(WORKERS):
        rng = np.random.default_rng(w)
        for _ in range(4):
            np.add.at(expected, rng.integers(0, BINS, 50_000), 3)
    assert sl.tolist()[:BINS] == expected.tolist()


def _writer(sl, seconds, seed):
    # Every value written is one of PATTERNS: a torn store would mix two.
    rng = np.random.default_rng(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for k in rng.integers(0, len(sl), 64):
            pattern = int(rng.integers(0, 128))
            if k % 2:
                sl[k] = pattern * 0x0101010101010101
            else:
                sl[k] = float(pattern) * 1.0000000000000002


def _reader(sl, seconds, bad):
    ints = {p * 0x0101010101010101 for p in range(128)}
    floats = {float(p) * 1.0000000000000002 for p in range(128)}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for k, value in enumerate(sl.tolist()):
            if value not in (ints if k % 2 else floats):
                bad.value += 1
        view_ints = sl.view(1, 2)[0]           # a view reads the same slots
        if int(view_ints) not in ints:
            bad.value += 1


def test_readers_never_see_torn_values(make):
    sl = make([0.0 if k % 2 == 0 else 0 for k in range(64)])
    bad = multiprocessing.get_context("fork").Value("l", 0)      # ("q" is 3.7+)
    run_processes("fork", [(_writer, (sl, 1.5, s)) for s in range(2)]
                  + [(_reader, (sl, 1.5, bad)) for _ in range(2)], timeout=60)
    assert bad.value == 0


# -- the API, in one process ---------------------------------------------------

def test_fetch_add_returns_the_previous_value(make):
    sl = make([5, 1.5])
    assert sl.fetch_add(0, 3) == 5 and sl[0] == 8
    assert sl.fetch_add(-2, -10) == 8 and sl[0] == -2
    assert sl.fetch_add(1, 1) == 1.5 and sl[1] == 2.5
    assert sl.fetch_add(1, 0.25) == 2.5 and sl[1] == 2.75
    assert sl.fetch_add(0, np.int16(2)) == -2 and sl.fetch_add(1, np.float32(0.5)) == 2.75
    assert isinstance(sl.fetch_add(0, 0), int) and isinstance(sl.fetch_add(1, 0), float)


def test_fetch_add_overflow_raises_and_leaves_the_item(make):
    sl = make([2**63 - 2, -2**63 + 1])
    before = bytes(sl.shm.buf)
    with pytest.raises(OverflowError, match="unchanged"):
        sl.fetch_add(0, 2)
    with pytest.raises(OverflowError):
        sl.fetch_add(1, -2)
    with pytest.raises(OverflowError):
        sl.fetch_add(0, 2**64)
    assert bytes(sl.shm.buf) == before
    assert sl.fetch_add(0, 1) == 2**63 - 2 and sl[0] == 2**63 - 1


@pytest.mark.parametrize("item, delta", [
    ("text", 1), (b"b", 1), (None, 1), (True, 1), (3, 1.5), (3, "1"), (3.0, None), (3, [1]),
])
def test_fetch_add_type_errors_write_nothing(make, item, delta):
    sl = make([item])
    before = bytes(sl.shm.buf)
    with pytest.raises(TypeError):
        sl.fetch_add(0, delta)
    assert bytes(sl.shm.buf) == before


def test_atomics_check_indexes_and_closed_lists(make):
    sl = make([1, 2])
    for op in (lambda: sl.fetch_add(2, 1), lambda: sl.compare_exchange(-3, 1, 2),
               lambda: sl.load(5), lambda: sl.store(2, 1), lambda: sl.add_at([2], 1)):
        with pytest.raises(IndexError):
            op()
    sl.close()
    for op in (lambda: sl.fetch_add(0, 1), lambda: sl.compare_exchange(0, 1, 2),
               lambda: sl.load(0), lambda: sl.store(0, 1), lambda: sl.add_at([0], 1)):
        with pytest.raises(ValueError, match="closed"):
            op()


def test_compare_exchange(make):
    sl = make([7, 0.0, "s"])
    assert sl.compare_exchange(0, 7, 9) is True and sl[0] == 9
    assert sl.compare_exchange(0, 7, 11) is False and sl[0] == 9
    assert sl.compare_exchange(0, 2**70, 1) is False
    assert sl.compare_exchange(1, -0.0, 2.5) is True and sl[1] == 2.5   # -0.0 == 0.0
    sl[1] = math.nan
    assert sl.compare_exchange(1, math.nan, 1.0) is False                # NaN != NaN
    for args in ((0, 9.0, 1), (0, 9, 1.0), (1, 1, 2.0), (0, True, 1)):
        with pytest.raises(TypeError):
            sl.compare_exchange(*args)
    with pytest.raises(OverflowError):
        sl.compare_exchange(0, 9, 2**63)
    with pytest.raises(TypeError):
        sl.compare_exchange(2, "s", "t")
    assert sl[0] == 9


def test_load_and_store(make):
    sl = make([1, 2.5, None])
    assert sl.load(0) == 1 and sl.load(1) == 2.5
    sl.store(0, -4)
    sl.store(1, 0.125)
    assert sl.tolist() == [-4, 0.125, None]
    with pytest.raises(TypeError):
        sl.store(0, 1.0)          # store keeps the type
    with pytest.raises(TypeError):
        sl.store(1, 1)
    with pytest.raises(TypeError):
        sl.load(2)
    with pytest.raises(OverflowError):
        sl.store(0, 2**63)


def test_add_at_semantics_match_numpy(make):
    rng = np.random.default_rng(0)
    indices = rng.integers(-10, 10, 1000)
    deltas = rng.integers(-5, 5, 1000)
    expected = np.zeros(10, dtype=np.int64)
    np.add.at(expected, indices, deltas)
    sl = make([0] * 10)
    sl.add_at(indices, deltas)
    assert sl.tolist() == expected.tolist()
    sl.add_at(np.array([[1, 1], [2, 2]]), 5)                   # any shape, scalar delta
    assert sl[1] == expected[1] + 10 and sl[2] == expected[2] + 10
    sl.add_at([], 1)
    sl.add_at(np.array([0, 1], dtype=np.uint8), np.array([True, True]))
    assert sl[0] == expected[0] + 1


def test_add_at_into_floats(make):
    sl = make([0.0, 1, 0.5])
    sl.add_at([0, 0, 2], [1.5, 2, 0.25])
    sl.add_at([1], 4)                                           # int deltas into an int
    sl.add_at([0, 2], np.array([1, 1], dtype=np.int32))         # int deltas into floats
    assert sl.tolist() == [4.5, 5, 1.75]


@pytest.mark.parametrize("indices, deltas, error", [
    ([0, 5], 1, IndexError), ([0, -6], 1, IndexError),
    (np.array([0, 2**63], dtype=np.uint64), 1, IndexError),
    ([0.0], 1, TypeError), ([0, 1], [1, 2, 3], ValueError), ([0, 4], 1, TypeError),
    ([0, 1], 1.5, TypeError), ([0], "x", TypeError), ([0], 1 + 1j, TypeError),
    ([0], np.array([2**63], dtype=np.uint64), OverflowError),
])
def test_add_at_checks_everything_before_writing(make, indices, deltas, error):
    sl = make([1, 2, 3, 4.0, "s"])
    before = bytes(sl.shm.buf)
    with pytest.raises(error):
        sl.add_at(indices, deltas)
    assert bytes(sl.shm.buf) == before


def test_add_at_overflow_skips_only_the_overflowing_additions(make):
    sl = make([2**63 - 1, 0])
    with pytest.raises(OverflowError, match="1 of 3 additions"):
        sl.add_at([1, 0, 1], 1)
    assert sl.tolist() == [2**63 - 1, 2]


def test_same_type_writes_do_not_rewrite_metadata(make):
    sl = make([1, 2.0])
    metadata = bytes(sl.shm.buf)[8 * 4 + 16:]
    sl[0] = 5
    sl[1] = 6.0
    sl.fetch_add(0, 1)
    sl.store(1, 1.0)
    assert bytes(sl.shm.buf)[8 * 4 + 16:] == metadata


def test_cells_are_the_atomics_bound_to_one_item(make):
    sl = make([10, 2.5, "text"])
    count, level = sl.cell(0), sl.cell(-2)
    assert (count.list, count.index, level.index) == (sl, 0, 1)
    assert count.fetch_add(5) == 10 and count.load() == 15
    assert count.compare_exchange(15, 20) and not count.compare_exchange(15, 30)
    count.store(7)
    assert level.fetch_add(1) == 2.5 and level.load() == 3.5
    with pytest.raises(TypeError, match="int"):
        count.fetch_add(0.5)
    with pytest.raises(OverflowError):
        count.fetch_add(2**63)
    with pytest.raises(TypeError, match="item 2 is a str"):
        sl.cell(2).load()
    with pytest.raises(IndexError, match="for a ShareableList of 3 items"):
        sl.cell(3)
    again = pickle.loads(pickle.dumps(count))
    try:
        assert again.index == 0 and again.fetch_add(1) == 7 and sl[0] == 8
        assert len(pickle.dumps(count)) < 1024
    finally:
        again.list.close()
    sl[0] = "now str"                      # the item's type is checked on every call
    with pytest.raises(TypeError, match="is a str"):
        count.load()
    sl.close()
    with pytest.raises(ValueError, match="closed"):
        count.load()


def test_a_cell_whose_argument_closes_the_list_raises_cleanly():
    run_python("""
        import gc
        from pyshl import ShareableList

        class Closer:
            def __init__(self, sl):
                self.sl = [sl]
            def __index__(self):
                self.sl.pop().close()
                gc.collect()
                return 1

        def make():
            sl = ShareableList([0, 0])
            name = sl.shm.name
            return sl.cell(0), name

        cell, name = make()
        for call in (lambda: cell.fetch_add(Closer(cell.list)),
                     lambda: cell.store(Closer(cell.list)),
                     lambda: cell.compare_exchange(0, Closer(cell.list))):
            try:
                call()
            except ValueError as exc:
                assert "closed" in str(exc), exc
            else:
                raise AssertionError("no error")
        from pyshl import SharedMemory
        shm = SharedMemory(name)
        shm.close()
        shm.unlink()
    """)


def _cell_worker(cell, updates):
    for _ in range(updates):
        cell.fetch_add(1)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_cells_from_many_processes_lose_nothing(make, method):
    sl = make([0, 0.0])
    run_processes(method, [(_cell_worker, (sl.cell(k % 2), 5000)) for k in range(4)])
    assert sl.tolist() == [10000, 10000.0]


EDGES = [0, 1, -1, 2**30 - 1, 2**30, -2**30, 2**31, 2**60 + 3, -2**60 - 3, 2**62,
         2**63 - 1, -2**63]


@pytest.mark.parametrize("value", EDGES)
def test_int_fast_paths_read_every_width_of_int(make, value):
    # Small ints are read in place (one, two or more 30-bit digits, or
    # CPython 3.12's compact form); every width must give the same answers.
    sl = make([0, 0.5])
    cell = sl.cell(0)
    for store, load in ((sl.store, lambda: sl.load(0)), (None, cell.load)):
        (store or (lambda k, v: cell.store(v)))(0, value)
        assert load() == value and sl[0] == value
    sl[0] = 0
    assert sl.fetch_add(0, value) == 0 and cell.fetch_add(-value if value > -2**63 else 1) == value
    assert sl.compare_exchange(0, sl[0], value) and cell.compare_exchange(value, 5) and sl[0] == 5
    assert not sl.compare_exchange(0, value if value != 5 else 6, 7) and sl[0] == 5


def test_int_fast_paths_fall_back_for_everything_else(make):
    sl = make([2**63 - 1, 1.5, "s"])
    cell = sl.cell(0)
    for fetch_add in (lambda d: sl.fetch_add(0, d), cell.fetch_add):
        with pytest.raises(OverflowError, match="unchanged"):
            fetch_add(1)
        with pytest.raises(OverflowError):
            fetch_add(2**64)
    assert sl[0] == 2**63 - 1
    assert sl.fetch_add(1, 2) == 1.5 and sl.load(1) == 3.5 and sl.cell(1).load() == 3.5
    with pytest.raises(IndexError):
        sl.load(3)
    with pytest.raises(TypeError, match="is a str"):
        sl.store(2, 1)
    assert not sl.compare_exchange(0, 2**64, 1) and sl[0] == 2**63 - 1
    sl.store(-3, 7)
    assert sl.load(-3) == 7 and sl.load(np.int64(0)) == 7


def test_add_at_into_floats_matches_numpy_where_the_readme_says(make):
    # Zeros keep their sign as NumPy's do: -0.0 is the identity of addition.
    starts = [-0.0, -0.0, 0.0, -0.0, -0.0]
    sl = make(list(starts))
    cases = [([0], -0.0), ([1, 1], [-0.0, -0.0]), ([2], [-0.0]), ([3], [0.0]),
             ([4, 4], [1.0, -1.0])]
    expected = np.array(starts)
    for indices, deltas in cases:
        sl.add_at(indices, deltas)
        np.add.at(expected, indices, deltas)
    assert [math.copysign(1.0, v) for v in sl.tolist()] == list(np.copysign(1.0, expected))
    # Every running total exactly representable: the same result, whatever the order.
    rng = np.random.default_rng(1)
    indices = rng.integers(0, 5, 5000)
    deltas = rng.integers(-2 ** 40, 2 ** 40, 5000).astype(np.float64) / 8
    expected = np.zeros(5)
    np.add.at(expected, indices, deltas)
    sums = make([0.0] * 5)
    sums.add_at(indices, deltas)
    assert sums.tolist() == expected.tolist()
    # Beyond that, a target's int deltas are summed exactly and rounded once,
    # where np.add.at rounds at each add (the aggregation guide says so).
    big = make([0.0])
    big.add_at([0, 0, 0], [2 ** 53, 1, 1])
    expected = np.zeros(1)
    np.add.at(expected, [0, 0, 0], [2 ** 53, 1, 1])
    assert big[0] == 2.0 ** 53 + 2 and expected[0] == 2.0 ** 53


@pytest.mark.parametrize("state", ["closed", "readonly"])
def test_add_at_of_nothing_still_checks_the_list(make, state):
    sl = make([0, 1.5])
    if state == "closed":
        target = sl
        sl.close()
        error, match = ValueError, "closed"
    else:
        target = pyshl.ShareableList(name=sl.shm.name, readonly=True)
        error, match = TypeError, "readonly"
    try:
        for indices, deltas in [([], 1), (np.array([], dtype=np.int64), []), ([], [])]:
            with pytest.raises(error, match=match):
                target.add_at(indices, deltas)
    finally:
        if target is not sl:
            target.shm.close()
