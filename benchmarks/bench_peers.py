"""pyshl's atomics and add_at against their peers, side by side in one run.

    pip install -e ".[bench]"          # the optional peer: atomicshm (Python 3.11+)
    python benchmarks/bench_peers.py [--workers 4] [--bins 256] [--scale 1]

Peers: atomicshm (lock-free atomics on a SharedMemory buffer, offsets and
bound cells), multiprocessing.Value/Array with their locks, the standard
ShareableList with a multiprocessing.Lock, and private NumPy (np.add.at,
np.bincount) as the floor.  A peer that is not installed is
skipped with a message.  Workers are spawned and start together (a barrier);
every row's totals are checked exactly.  Medians; the machine is noisy, so
read the ratios.  One-process add_at rows time pyshl and np.add.at in turn.
"""
import argparse
import contextlib
import multiprocessing as mp
import statistics
import time
import timeit
from multiprocessing import shared_memory as std_shared_memory

import numpy as np
from _workers import check_counts, random_bins, updates_per_second

from pyshl import ShareableList

try:
    import atomicshm
except ImportError:
    atomicshm = None


# -- one process: per-call cost -------------------------------------------------------

def _timer(stmt, namespace):
    setup = "; ".join("%s = _ns[%r]" % (k, k) for k in namespace)
    return timeit.Timer(stmt, setup=setup, globals={"_ns": namespace})


def _round_robin(timers, number, repeat=9):
    """Median seconds per call of each timer.  The timers take turns, one
    repeat each per round, so a slow spell of this noisy machine hits every
    contender alike rather than whichever happens to run then."""
    for timer in timers:
        timer.timeit(number)      # warm up (caches, branch predictors, the CPU clock)
    times = [[] for _ in timers]
    for _ in range(repeat):
        for timer, kept in zip(timers, times):
            kept.append(timer.timeit(number) / number)
    return [statistics.median(kept) for kept in times]


_OPS = ("fetch_add", "CAS", "load", "store")


def _contender(label, methods, arguments):
    """(label, {op: statement}, namespace): the methods for _OPS, in order,
    each called with its arguments."""
    names = ("fa", "cas", "load", "store")
    return (label, {op: "%s(%s)" % (name, args) for op, name, args in zip(_OPS, names, arguments)},
            dict(zip(names, methods)))


def per_call_rows(number=200_000):
    bound = ("1", "0, 0", "", "0")        # a cell's arguments: no index or offset
    with contextlib.ExitStack() as stack:
        sl = stack.enter_context(ShareableList([0] * 64))
        cell = sl.cell(7)
        contenders = [
            _contender("pyshl sl.op(i, ...)",
                       (sl.fetch_add, sl.compare_exchange, sl.load, sl.store),
                       ("7, 1", "7, 0, 0", "7", "7, 0")),
            _contender("pyshl cell.op(...)",
                       (cell.fetch_add, cell.compare_exchange, cell.load, cell.store), bound)]
        if atomicshm is not None:
            shm = std_shared_memory.SharedMemory(create=True, size=4096)
            stack.callback(shm.unlink)
            stack.callback(shm.close)
            view = atomicshm.AtomicView(shm.buf)
            acell = view.cell_u64(56)
            contenders += [
                _contender("atomicshm view.op_u64(offset, ...)",
                           (view.fetch_add_u64, view.cas_u64, view.load_u64, view.store_u64),
                           ("56, 1", "56, 0, 0", "56", "56, 0")),
                _contender("atomicshm cell.op(...)",
                           (acell.fetch_add, acell.cas, acell.load, acell.store), bound)]
        value = mp.get_context("spawn").Value("q", 0)
        contenders.append(("multiprocessing.Value + its lock", {
            "fetch_add": "with v.get_lock(): v.value += 1", "load": "v.value"}, {"v": value}))
        keys = [(label, op) for label, stmts, _ in contenders for op in stmts]
        timers = [_timer(stmts[op], ns) for _, stmts, ns in contenders for op in stmts]
        medians = _round_robin(timers, number)
        rows = {label: {} for label, _, _ in contenders}
        for (label, op), seconds in zip(keys, medians):
            rows[label][op] = seconds
        del timers, contenders
        if atomicshm is not None:
            del acell, view     # they export shm.buf, which must be released to close it
        return list(rows.items())


# -- one process: add_at --------------------------------------------------------------

def _alternating_medians(ours, theirs, repeat=11):
    """Median seconds of ours() and of theirs(), timed in turn.  Alternating
    gives both the same machine state: neither finds its target array left in
    the cache by its own previous run, and a slow spell of this noisy machine
    hits both sides alike."""
    times = ([], [])
    for _ in range(repeat):
        for fn, kept in zip((ours, theirs), times):
            start = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def add_at_rows(bins, repeat=11):
    rng = np.random.default_rng(0)
    rows = []
    updates = 1_000_000
    targets = rng.integers(0, bins, updates)
    private = np.zeros(bins, dtype=np.int64)
    with ShareableList([0] * bins) as sl:
        ours, theirs = _alternating_medians(lambda: sl.add_at(targets, 1),
                                            lambda: np.add.at(private, targets, 1), repeat)
        if sl.tolist() != private.tolist() or not private.any():
            raise SystemExit("add_at lost updates")
    rows.append(("%d int bins, 1M updates of 1" % bins, updates / ours, updates / theirs))

    float_bins = 1_000_000
    targets = rng.integers(0, float_bins, updates)
    deltas = rng.integers(0, 4, updates).astype(np.float64)   # integral: exact sums
    private = np.zeros(float_bins)
    with ShareableList(np.zeros(float_bins)) as sl:
        view = sl.view()
        ours, theirs = _alternating_medians(lambda: sl.add_at(targets, deltas),
                                            lambda: np.add.at(private, targets, deltas), repeat)
        if not np.array_equal(view, private) or not private.any():
            raise SystemExit("float add_at lost updates")
        del view
    rows.append(("1M float bins, 1M float updates", updates / ours, updates / theirs))
    return rows


# -- many workers -------------------------------------------------------------------

def w_add_at(name, lock, barrier, worker, count, bins, batch=1_000_000):
    sl = ShareableList(name=name)
    targets = random_bins(worker, count, bins)
    barrier.wait()
    for start in range(0, count, batch):
        sl.add_at(targets[start:start + batch], 1)
    sl.close()


def w_bincount_add_at(name, lock, barrier, worker, count, bins, batch=1_000_000):
    # The userland way: count privately, then add the counts of touched bins.
    sl = ShareableList(name=name)
    targets = random_bins(worker, count, bins)
    barrier.wait()
    for start in range(0, count, batch):
        counts = np.bincount(targets[start:start + batch], minlength=bins)
        touched = np.flatnonzero(counts)
        sl.add_at(touched, counts[touched])
    sl.close()


def w_own_rows(name, lock, barrier, worker, count, bins, batch=1_000_000):
    # No atomics: each worker owns a row of `bins` slots; the parent reduces.
    sl = ShareableList(name=name)
    targets = random_bins(worker, count, bins)
    barrier.wait()
    row = sl.view(worker * bins, (worker + 1) * bins)
    for start in range(0, count, batch):
        row += np.bincount(targets[start:start + batch], minlength=bins)
    del row
    sl.close()


def w_fetch_add(name, lock, barrier, worker, count, bins):
    sl = ShareableList(name=name)
    targets = random_bins(worker, count, bins).tolist()
    fetch_add = sl.fetch_add
    barrier.wait()
    for b in targets:
        fetch_add(b, 1)
    sl.close()


def w_atomicshm_fetch_add(name, lock, barrier, worker, count, bins):
    shm = std_shared_memory.SharedMemory(name)
    view = atomicshm.AtomicView(shm.buf)
    offsets = (8 * random_bins(worker, count, bins)).tolist()
    fetch_add = view.fetch_add_u64
    barrier.wait()
    for offset in offsets:
        fetch_add(offset, 1)
    view.close()
    shm.close()


def w_stdlib_locked(name, lock, barrier, worker, count, bins):
    # The standard list, with a lock for its read-modify-write.  Attaching
    # registers the segment with the resource tracker (gh-82300), but workers
    # share the parent's tracker, where it is registered already: harmless.
    sl = std_shared_memory.ShareableList(name=name)
    targets = random_bins(worker, count, bins).tolist()
    barrier.wait()
    for b in targets:
        with lock:
            sl[b] = sl[b] + 1
    sl.shm.close()


def w_array_locked(array, lock, barrier, worker, count, bins):
    targets = random_bins(worker, count, bins).tolist()
    barrier.wait()
    for b in targets:
        with array.get_lock():
            array[b] += 1


@contextlib.contextmanager
def _pyshl_list(size, totals=None):
    """A zeroed pyshl list: (its name, a function giving the per-bin totals)."""
    with ShareableList([0] * size) as sl:
        yield sl.shm.name, (lambda: totals(sl)) if totals else sl.tolist


@contextlib.contextmanager
def _atomicshm_buffer(size):
    shm = std_shared_memory.SharedMemory(create=True, size=8 * size)
    try:
        shm.buf[:] = bytes(8 * size)
        yield shm.name, lambda: np.frombuffer(shm.buf, dtype=np.uint64).tolist()
    finally:
        shm.close()
        shm.unlink()


@contextlib.contextmanager
def _stdlib_list(size):
    std = std_shared_memory.ShareableList([0] * size)
    try:
        yield std.shm.name, lambda: list(std)
    finally:
        std.shm.close()
        std.shm.unlink()


@contextlib.contextmanager
def _locked_array(size):
    array = mp.get_context("spawn").Array("q", size)
    yield array, lambda: array[:]


def worker_rows(workers, bins, scale, rounds=3):
    """(label, median updates/s) per contender.  The contenders take turns,
    one run each per round, each run on zeroed bins with its totals checked."""
    def own_rows_totals(sl):
        return sl.view().reshape(workers, bins).sum(axis=0).tolist()

    contenders = [   # label, worker, updates per worker, zeroed shared bins
        ("pyshl add_at(idx, 1), batches of 1M", w_add_at, 10_000_000,
         lambda: _pyshl_list(bins)),
        ("userland: bincount, then add_at(bins, counts)", w_bincount_add_at, 10_000_000,
         lambda: _pyshl_list(bins)),
        ("own rows + bincount, parent reduces (no atomics)", w_own_rows, 10_000_000,
         lambda: _pyshl_list(bins * workers, own_rows_totals)),
        ("pyshl fetch_add(i, 1) loop", w_fetch_add, 300_000, lambda: _pyshl_list(bins))]
    if atomicshm is not None:
        contenders.append(("atomicshm fetch_add_u64(offset, 1) loop", w_atomicshm_fetch_add,
                           300_000, lambda: _atomicshm_buffer(bins)))
    contenders += [
        ("stdlib ShareableList + multiprocessing.Lock, sl[i] = sl[i] + 1", w_stdlib_locked,
         4_000, lambda: _stdlib_list(bins)),
        ("multiprocessing.Array + its lock, a[i] += 1", w_array_locked, 20_000,
         lambda: _locked_array(bins))]
    rates = {label: [] for label, _, _, _ in contenders}
    for _ in range(rounds):
        for label, worker, count, zeroed in contenders:
            count = int(count * scale)
            with zeroed() as (shared, totals):
                rates[label].append(updates_per_second(worker, shared, workers, count, bins))
                check_counts(totals(), workers, count, bins, label)
    return [(label, statistics.median(kept)) for label, kept in rates.items()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--bins", type=int, default=256)
    parser.add_argument("--scale", type=float, default=1.0, help="work per worker (default 1)")
    args = parser.parse_args()
    if atomicshm is None:
        print("atomicshm is not installed (pip install -e \".[bench]\", Python 3.11+): "
              "its rows are skipped\n")

    print("Per call, one process (ns, median):\n")
    print("| contender | fetch_add | CAS | load | store |")
    print("|---|---:|---:|---:|---:|")
    for label, times in per_call_rows():
        print("| %s | %s |" % (label, " | ".join(
            "%.1f" % (times[op] * 1e9) if op in times else "—"
            for op in ("fetch_add", "CAS", "load", "store"))))

    print("\nadd_at, one process (million updates/s, median):\n")
    print("| case | pyshl add_at | private np.add.at | ratio |")
    print("|---|---:|---:|---:|")
    for label, ours, theirs in add_at_rows(args.bins):
        print("| %s | %.0f | %.0f | %.2f× |" % (label, ours / 1e6, theirs / 1e6, ours / theirs))

    print("\n%d spawned workers, %d bins, %d cores; totals checked exactly (updates/s):\n"
          % (args.workers, args.bins, mp.cpu_count()))
    rows = worker_rows(args.workers, args.bins, args.scale)
    own_rows = rows[2][1]
    print("| contender | updates/s | vs own rows |")
    print("|---|---:|---:|")
    for label, rate in rows:
        print("| %s | %s | %.3g× |" % (label, format(int(rate), ","), rate / own_rows))


if __name__ == "__main__":
    main()
