"""add_at combines each target's deltas privately, then adds once per target:
the results must be exactly those of adding one at a time."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import run_processes
from pyshl import ShareableList

MAX, MIN = 2**63 - 1, -2**63


def one_at_a_time(values, indices, deltas):
    """The reference: each addition in order, one that would overflow int64
    skipped.  Returns (values, number skipped, position of the first skipped)."""
    values = list(values)
    deltas = np.broadcast_to(np.asarray(deltas), np.shape(indices)).ravel().tolist()
    skipped, first = 0, None
    for j, (i, d) in enumerate(zip(np.ravel(indices).tolist(), deltas)):
        if isinstance(values[i], float):
            values[i] += float(d)
        elif MIN <= values[i] + d <= MAX:
            values[i] += d
        else:
            skipped += 1
            first = j if first is None else first
    return values, skipped, first


def check_against_reference(sl, indices, deltas):
    expected, skipped, first = one_at_a_time(sl.tolist(), indices, deltas)
    if skipped:
        with pytest.raises(OverflowError) as info:
            sl.add_at(indices, deltas)
        assert str(info.value).startswith("%d of %d additions" % (skipped, np.size(indices)))
        assert "at index %d" % np.ravel(indices)[first] in str(info.value)
    else:
        sl.add_at(indices, deltas)
    assert sl.tolist() == expected


@pytest.mark.parametrize("deltas", [1, -3, np.arange(12) - 6, np.int8(2)])
def test_repeated_negative_and_out_of_order_indices(make, deltas):
    sl = make(list(range(10)))
    check_against_reference(sl, np.array([9, -1, 3, 3, 0, -10, 5, 3, 9, 2, 2, -8]), deltas)


def test_a_sum_that_could_overflow_falls_back_to_one_at_a_time(make):
    # From MAX - 1, adding +5 then -10 one at a time skips the +5 (it would
    # overflow) and applies the -10; the combined sum (-5) would not overflow,
    # so combining must not be used here.
    sl = make([MAX - 1, 0])
    check_against_reference(sl, [0, 0], [5, -10])
    assert sl[0] == MAX - 11


def test_sums_too_large_for_int64_fall_back_exactly(make):
    sl = make([0, MIN + 5, MAX - 5])
    check_against_reference(sl, [0] * 5 + [1, 1, 2, 2], [2**62] * 4 + [-2**62, -3, -7, 3, 9])
    sl = make([0, 7])
    check_against_reference(sl, [0] * 6 + [1], 2**62)        # a scalar delta, many times


def test_float_targets_take_the_combined_sum(make):
    sl = make([0.5] * 8)
    rng = np.random.default_rng(1)
    indices = rng.integers(0, 8, 10_000)
    deltas = rng.integers(-100, 100, 10_000).astype(np.float64)   # integral: sums are exact
    expected = np.full(8, 0.5)
    np.add.at(expected, indices, deltas)
    sl.add_at(indices, deltas)
    assert sl.tolist() == expected.tolist()
    # Non-integral deltas: the sum per target may round differently from
    # one-at-a-time adds (as np.bincount(weights=) may from np.add.at).
    sl.add_at(indices, deltas + 0.1)
    np.add.at(expected, indices, deltas + 0.1)
    np.testing.assert_allclose(sl.tolist(), expected, rtol=1e-9)


def test_mixed_int_and_float_targets(make):
    sl = make([0, 0.0, 5, 2.5])
    check_against_reference(sl, [0, 1, 2, 3, 1, 0], [1, 2, 3, 4, 5, 6])
    with pytest.raises(TypeError, match="item 0, an int"):
        sl.add_at([1, 0], 1.5)
    assert sl.tolist() == [7, 7.0, 8, 6.5]


def test_a_corrupt_slot_inside_a_batch_raises_and_writes_nothing(make):
    sl = make(list(range(100)))
    formats = 8 * 102 + 8 * 100
    sl.shm.buf[formats + 8 * 50] = ord("Z")       # item 50's format entry: unknown
    before = bytes(sl.shm.buf)
    with pytest.raises(ValueError, match="corrupt at item 50"):
        sl.add_at(np.arange(100), 1)
    assert bytes(sl.shm.buf) == before
    sl.add_at(np.arange(50), 1)                   # the targets around it still work
    assert sl[:50] == list(range(1, 51))


def test_targets_spread_wide_are_added_one_by_one(make):
    sl = make(np.zeros(1_000_000, dtype=np.int64))
    check_against_reference(sl, [999_999, 0, 0, -1], [1, 2, 3, 4])   # span >> updates
    assert sl[0] == 5 and sl[-1] == 5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(MIN, MAX), st.sampled_from([MIN, MAX, MAX - 1, 0])),
                min_size=1, max_size=6),
       st.data())
def test_combining_matches_one_at_a_time(values, data):
    n = len(values)
    indices = data.draw(st.lists(st.integers(-n, n - 1), max_size=40))
    deltas = data.draw(st.one_of(
        st.integers(MIN, MAX),
        st.lists(st.one_of(st.integers(-2**62, 2**62), st.sampled_from([MIN, MAX, -1, 1])),
                 min_size=len(indices), max_size=len(indices))))
    sl = ShareableList(values, track=False)
    try:
        check_against_reference(sl, np.array(indices, dtype=np.int64),
                                np.array(deltas, dtype=np.int64))
    finally:
        sl.close()
        sl.unlink()


def _add_batches(sl, seed, batches):
    rng = np.random.default_rng(seed)
    for _ in range(batches):
        indices = rng.integers(-len(sl), len(sl), 50_000)
        sl.add_at(indices, rng.integers(-3, 4, indices.size))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_concurrent_add_at_loses_nothing(make, method):
    bins, workers, batches = 64, 4, 5
    sl = make([0] * bins)
    expected = np.zeros(bins, dtype=np.int64)
    for seed in range(workers):
        rng = np.random.default_rng(seed)
        for _ in range(batches):
            indices = rng.integers(-bins, bins, 50_000)
            np.add.at(expected, indices, rng.integers(-3, 4, indices.size))
    run_processes(method, [(_add_batches, (sl, seed, batches)) for seed in range(workers)])
    assert sl.tolist() == expected.tolist()


# A list longer than add_at combines over (65,536 slots), with few repeats:
# the updates go straight into the segment, one by one.
SPREAD = 200_000


def test_spread_updates_into_one_kind(make):
    sl = make(np.zeros(SPREAD, dtype=np.int64))
    rng = np.random.default_rng(3)
    indices = rng.integers(-SPREAD, SPREAD, 1000)
    deltas = rng.integers(-50, 50, 1000)
    check_against_reference(sl, indices, deltas)
    floats = make(np.zeros(SPREAD))
    floats.add_at(indices, deltas.astype(np.float64))
    expected = np.zeros(SPREAD)
    np.add.at(expected, indices, deltas.astype(np.float64))
    assert np.array_equal(floats.view(), expected)
    with pytest.raises(TypeError, match="float deltas to item"):
        sl.add_at(indices, 0.5)


def test_spread_updates_overflow_one_at_a_time(make):
    sl = make(np.zeros(SPREAD, dtype=np.int64))
    sl[0], sl[-1] = 2**63 - 2, -2**63 + 1
    check_against_reference(sl, [0, SPREAD - 1, 0, -1, 0], [1, -1, 1, -1, -5])


def test_spread_updates_into_mixed_kinds_are_checked_one_by_one(make):
    items = [0] * SPREAD
    items[SPREAD // 2] = 0.5
    sl = make(items)
    check_against_reference(sl, [0, SPREAD // 2, SPREAD - 1], [1, 2, 3])
    sl[7] = "text"
    before = bytes(sl.shm.buf)
    with pytest.raises(TypeError, match="item 7 is a str"):
        sl.add_at([0, 7, SPREAD - 1], 1)
    assert bytes(sl.shm.buf) == before


def test_a_failed_spread_add_at_adds_nothing_while_another_thread_edits_indices(make):
    import threading
    sl = make(np.zeros(200_000, dtype=np.int64))
    idx = np.arange(0, 200_000, 2)          # a long list, spread: added update by update
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            idx[-1] = 10**7                 # out of range ...
            idx[-1] = 199_998               # ... and back

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        total = 0
        for _ in range(40):
            try:
                sl.add_at(idx, 1)
            except IndexError:
                pass
            now = int(sl.view().sum())
            assert now - total in (0, idx.size)      # all or nothing
            total = now
    finally:
        stop.set()
        flipper.join()
