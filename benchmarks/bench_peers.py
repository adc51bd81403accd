"""pyshl's atomics and add_at against their peers, side by side in one run.

    pip install -e ".[bench]"          # the optional peer: atomicshm (Python 3.11+)
    python benchmarks/bench_peers.py [--workers 4] [--bins 256] [--scale 1]

Peers: atomicshm (lock-free atomics on a SharedMemory buffer, offsets and
bound cells), multiprocessing.Value/Array with their locks, the standard
ShareableList with a multiprocessing.Lock, and private NumPy (np.add.at,
np.bincount) as the floor.  A peer that is not installed is
skipped with a message.  Workers are spawned and start together (a barrier);
every row's totals are checked exactly.  Medians; the machine is noisy, so
read the ratios.
"""
import argparse
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

def _per_call(stmt, namespace, number=200_000, repeat=9):
    setup = "; ".join("%s = _ns[%r]" % (k, k) for k in namespace)
    timer = timeit.Timer(stmt, setup=setup, globals={"_ns": namespace})
    timer.timeit(number)          # warm up (caches, branch predictors, the CPU clock)
    return statistics.median(timer.repeat(repeat, number)) / number


def per_call_rows():
    rows = []
    with ShareableList([0] * 64) as sl:
        cell = sl.cell(7)
        ns = {"sl": sl, "cell": cell, "fa": sl.fetch_add, "cas": sl.compare_exchange,
              "load": sl.load, "store": sl.store, "cfa": cell.fetch_add,
              "ccas": cell.compare_exchange, "cload": cell.load, "cstore": cell.store}
        rows.append(("pyshl sl.op(i, ...)", {
            "fetch_add": _per_call("fa(7, 1)", ns), "CAS": _per_call("cas(7, 0, 0)", ns),
            "load": _per_call("load(7)", ns), "store": _per_call("store(7, 0)", ns)}))
        rows.append(("pyshl cell.op(...)", {
            "fetch_add": _per_call("cfa(1)", ns), "CAS": _per_call("ccas(0, 0)", ns),
            "load": _per_call("cload()", ns), "store": _per_call("cstore(0)", ns)}))
    if atomicshm is not None:
        shm = std_shared_memory.SharedMemory(create=True, size=4096)
        try:
            view = atomicshm.AtomicView(shm.buf)
            acell = view.cell_u64(56)
            ns = {"fa": view.fetch_add_u64, "cas": view.cas_u64, "load": view.load_u64,
                  "store": view.store_u64, "cfa": acell.fetch_add, "ccas": acell.cas,
                  "cload": acell.load, "cstore": acell.store}
            rows.append(("atomicshm view.op_u64(offset, ...)", {
                "fetch_add": _per_call("fa(56, 1)", ns), "CAS": _per_call("cas(56, 0, 0)", ns),
                "load": _per_call("load(56)", ns), "store": _per_call("store(56, 0)", ns)}))
            rows.append(("atomicshm cell.op(...)", {
                "fetch_add": _per_call("cfa(1)", ns), "CAS": _per_call("ccas(0, 0)", ns),
                "load": _per_call("cload()", ns), "store": _per_call("cstore(0)", ns)}))
            del acell, view, ns
        finally:
            shm.close()
            shm.unlink()
    value = mp.get_context("spawn").Value("q", 0)
    rows.append(("multiprocessing.Value + its lock", {
        "fetch_add": _per_call("with v.get_lock(): v.value += 1", {"v": value}, 50_000),
        "load": _per_call("v.value", {"v": value}, 50_000)}))
    return rows


# -- one process: add_at --------------------------------------------------------------

def _median_seconds(fn, repeat=7):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def add_at_rows(bins):
    rng = np.random.default_rng(0)
    rows = []
    updates = 1_000_000
    targets = rng.integers(0, bins, updates)
    with ShareableList([0] * bins) as sl:
        ours = _median_seconds(lambda: sl.add_at(targets, 1))
        expected = 7 * np.bincount(targets, minlength=bins)    # 7 repeats
        if sl.tolist() != expected.tolist():
            raise SystemExit("add_at lost updates")
    private = np.zeros(bins, dtype=np.int64)
    theirs = _median_seconds(lambda: np.add.at(private, targets, 1))
    rows.append(("%d int bins, 1M updates of 1" % bins, updates / ours, updates / theirs))

    float_bins = 1_000_000
    targets = rng.integers(0, float_bins, updates)
    deltas = rng.integers(0, 4, updates).astype(np.float64)   # integral: exact sums
    with ShareableList(np.zeros(float_bins)) as sl:
        view = sl.view()
        ours = _median_seconds(lambda: sl.add_at(targets, deltas))
        expected = np.zeros(float_bins)
        np.add.at(expected, targets, 7 * deltas)
        if not np.array_equal(view, expected):
            raise SystemExit("float add_at lost updates")
        del view
    private = np.zeros(float_bins)
    theirs = _median_seconds(lambda: np.add.at(private, targets, deltas))
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


def worker_rows(workers, bins, scale):
    rows = []


    count = int(10_000_000 * scale)
    for label, target in (("pyshl add_at(idx, 1), batches of 1M", w_add_at),
                          ("userland: bincount, then add_at(bins, counts)", w_bincount_add_at)):
        with ShareableList([0] * bins) as sl:
            rows.append((label, updates_per_second(target, sl.shm.name, workers, count, bins)))
            check_counts(sl, workers, count, bins, label)
    with ShareableList([0] * (bins * workers)) as sl:
        rows.append(("own rows + bincount, parent reduces (no atomics)",
                     updates_per_second(w_own_rows, sl.shm.name, workers, count, bins)))
        check_counts(sl.view().reshape(workers, bins).sum(axis=0), workers, count, bins,
                     "own rows")

    count = int(300_000 * scale)
    with ShareableList([0] * bins) as sl:
        rows.append(("pyshl fetch_add(i, 1) loop",
                     updates_per_second(w_fetch_add, sl.shm.name, workers, count, bins)))
        check_counts(sl, workers, count, bins, "fetch_add")
    if atomicshm is not None:
        shm = std_shared_memory.SharedMemory(create=True, size=8 * bins)
        try:
            shm.buf[:] = bytes(8 * bins)
            rows.append(("atomicshm fetch_add_u64(offset, 1) loop",
                         updates_per_second(w_atomicshm_fetch_add, shm.name, workers, count, bins)))
            check_counts(np.frombuffer(shm.buf, dtype=np.uint64).copy(), workers, count, bins,
                         "atomicshm")
        finally:
            shm.close()
            shm.unlink()
    count = int(4_000 * scale)
    std = std_shared_memory.ShareableList([0] * bins)
    try:
        rows.append(("stdlib ShareableList + multiprocessing.Lock, sl[i] = sl[i] + 1",
                     updates_per_second(w_stdlib_locked, std.shm.name, workers, count, bins)))
        check_counts(std, workers, count, bins, "stdlib")
    finally:
        std.shm.close()
        std.shm.unlink()
    count = int(20_000 * scale)
    array = mp.get_context("spawn").Array("q", bins)
    rows.append(("multiprocessing.Array + its lock, a[i] += 1",
                 updates_per_second(w_array_locked, array, workers, count, bins)))
    check_counts(array[:], workers, count, bins, "multiprocessing.Array")
    return rows


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
