"""Many workers adding into shared bins: pyshl's atomics against locks, side by side.

    python benchmarks/bench_atomics.py [--workers 4] [--bins 256]

Each contender runs W worker processes that add 1 into random bins of one
shared array; workers start together (a barrier, so process start-up is not
timed) and the wall time until the last finishes gives updates per second.
Every contender's totals are checked exactly after its run.
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


def stdlib_locked(shared, lock, barrier, worker, count, bins):
    # Forked workers share the parent's resource tracker, so the stdlib's
    # registration of this attached segment (gh-82300) is harmless here.
    sl = std_shared_memory.ShareableList(name=shared)
    targets = random_bins(worker, count, bins).tolist()
    barrier.wait()
    for b in targets:
        with lock:
            sl[b] = sl[b] + 1
    sl.shm.close()


def array_locked(shared, lock, barrier, worker, count, bins):
    targets = random_bins(worker, count, bins).tolist()
    barrier.wait()
    for b in targets:
        with shared.get_lock():
            shared[b] += 1


def pyshl_fetch_add(shared, lock, barrier, worker, count, bins):
    targets = random_bins(worker, count, bins).tolist()
    fetch_add = shared.fetch_add
    barrier.wait()
    for b in targets:
        fetch_add(b, 1)


def pyshl_add_at(shared, lock, barrier, worker, count, bins, batch=1_000_000):
    targets = random_bins(worker, count, bins)
    barrier.wait()
    for start in range(0, count, batch):
        shared.add_at(targets[start:start + batch], 1)


def pyshl_own_rows(shared, lock, barrier, worker, count, bins, batch=1_000_000):
    # No atomics: each worker owns one row of `bins` slots; the parent reduces.
    targets = random_bins(worker, count, bins)
    barrier.wait()
    row = shared.view(worker * bins, (worker + 1) * bins)
    for start in range(0, count, batch):
        row += np.bincount(targets[start:start + batch], minlength=bins)


def many_workers(workers, bins, scale):
    rows = []


    count = int(4_000 * scale)
    std = std_shared_memory.ShareableList([0] * bins)
    try:
        rate = updates_per_second(stdlib_locked, std.shm.name, workers, count, bins, "fork")
        check_counts(std, workers, count, bins, "stdlib")
    finally:
        std.shm.close()
        std.shm.unlink()
    rows.append(("stdlib ShareableList + Lock, sl[b] = sl[b] + 1", rate))

    count = int(20_000 * scale)
    array = mp.get_context("fork").Array("q", bins)
    rows.append(("multiprocessing.Array + its lock, a[b] += 1",
                 updates_per_second(array_locked, array, workers, count, bins, "fork")))
    check_counts(array[:], workers, count, bins, "multiprocessing.Array")

    count = int(300_000 * scale)
    with ShareableList([0] * bins) as sl:
        rows.append(("pyshl fetch_add(b, 1) loop",
                     updates_per_second(pyshl_fetch_add, sl, workers, count, bins, "fork")))
        check_counts(sl, workers, count, bins, "fetch_add")

    count = int(10_000_000 * scale)
    with ShareableList([0] * bins) as sl:
        rows.append(("pyshl add_at(batch of 1M, 1)",
                     updates_per_second(pyshl_add_at, sl, workers, count, bins, "fork")))
        check_counts(sl, workers, count, bins, "add_at")

    with ShareableList([0] * (bins * workers)) as sl:
        rows.append(("pyshl own rows + view() (no atomics)",
                     updates_per_second(pyshl_own_rows, sl, workers, count, bins, "fork")))
        check_counts(sl.view().reshape(workers, bins).sum(axis=0), workers, count, bins,
                     "own rows")
    return rows


def single_process(bins):
    with ShareableList([0] * bins) as sl:
        timer = timeit.Timer("f(7, 1)", setup="f = _ns['f']", globals={"_ns": {"f": sl.fetch_add}})
        fetch_add = statistics.median(timer.repeat(7, 200_000)) / 200_000
        timer = timeit.Timer("x[7]", setup="x = _ns['x']", globals={"_ns": {"x": sl}})
        getitem = statistics.median(timer.repeat(7, 200_000)) / 200_000
        targets = np.random.default_rng(0).integers(0, bins, 1_000_000)
        times = []
        for _ in range(7):
            start = time.perf_counter()
            sl.add_at(targets, 1)
            times.append(time.perf_counter() - start)
        add_at = 1_000_000 / statistics.median(times)
    private = np.zeros(bins, dtype=np.int64)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        np.add.at(private, targets, 1)
        times.append(time.perf_counter() - start)
    numpy_add_at = 1_000_000 / statistics.median(times)
    return fetch_add, getitem, add_at, numpy_add_at


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--bins", type=int, default=256)
    parser.add_argument("--scale", type=float, default=1.0, help="work per worker (default 1)")
    args = parser.parse_args()

    fetch_add, getitem, add_at, numpy_add_at = single_process(args.bins)
    print("One process: fetch_add %.1f ns per call (sl[i] %.1f ns); add_at %.0f million "
          "updates/s (numpy.add.at on a private array: %.0f million/s)"
          % (fetch_add * 1e9, getitem * 1e9, add_at / 1e6, numpy_add_at / 1e6))
    print()
    rows = many_workers(args.workers, args.bins, args.scale)
    array_rate = rows[1][1]
    stdlib_rate = rows[0][1]
    print("%d workers, %d bins, %d cores; totals checked exactly for every row" %
          (args.workers, args.bins, mp.cpu_count()))
    print()
    print("| contender | updates/s | vs Array + lock | vs stdlib + Lock |")
    print("|---|---:|---:|---:|")
    for label, rate in rows:
        print("| %s | %s | %s | %s |" % (label, format(int(rate), ","),
                                        _ratio(rate / array_rate), _ratio(rate / stdlib_rate)))


def _ratio(x):
    return (format(round(x), ",") if x >= 10 else "%.2g" % x) + "×"


if __name__ == "__main__":
    main()
