"""sl.lock(i) against multiprocessing.Lock, side by side in one run.

    python benchmarks/bench_locks.py [--workers 4] [--rounds 20000]

Uncontended acquire() + release() in one process, then W spawned workers each
doing `rounds` lock-protected compound updates (move an amount between two
balances, bump a counter), totals checked exactly.  Medians; the machine is
noisy, so read the ratios.
"""
import argparse
import multiprocessing as mp
import statistics
import timeit

from _workers import run_workers

from pyshl import ShareableList


def _per_call(stmt, namespace, number=200_000, repeat=9):
    timer = timeit.Timer(stmt, globals=namespace)
    timer.timeit(number)
    return statistics.median(timer.repeat(repeat, number)) / number


def uncontended():
    with ShareableList([0]) as sl:
        lock = sl.lock(0)
        ours = _per_call("acquire(); release()",
                         {"acquire": lock.acquire, "release": lock.release})
        with_block = _per_call("with lock: pass", {"lock": lock})
    theirs_lock = mp.get_context("spawn").Lock()
    theirs = _per_call("acquire(); release()",
                       {"acquire": theirs_lock.acquire, "release": theirs_lock.release})
    theirs_with = _per_call("with lock: pass", {"lock": theirs_lock})
    return ours, with_block, theirs, theirs_with


def w_pyshl(name, barrier, rounds):
    sl = ShareableList(name=name)
    lock = sl.lock(0)
    barrier.wait()
    for k in range(rounds):
        amount = k % 7 + 1
        with lock:
            sl[1] -= amount
            sl[2] += amount
            sl[3] += 1
    sl.close()


def w_mp(array, lock, barrier, rounds):
    barrier.wait()
    for k in range(rounds):
        amount = k % 7 + 1
        with lock:
            array[0] -= amount
            array[1] += amount
            array[2] += 1


def contended(workers, rounds):
    ctx = mp.get_context("spawn")
    expected_moved = workers * sum(k % 7 + 1 for k in range(rounds))
    with ShareableList([0, 10**9, 0, 0]) as sl:
        ours = run_workers(w_pyshl, lambda w, barrier, lock: (sl.shm.name, barrier, rounds),
                           workers)
        if sl.tolist() != [0, 10**9 - expected_moved, expected_moved, workers * rounds]:
            raise SystemExit("pyshl lock lost updates: %s" % sl.tolist())
    array = ctx.Array("q", [10**9, 0, 0], lock=False)
    theirs = run_workers(w_mp, lambda w, barrier, lock: (array, lock, barrier, rounds), workers)
    if list(array) != [10**9 - expected_moved, expected_moved, workers * rounds]:
        raise SystemExit("multiprocessing.Lock lost updates")
    return ours, theirs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    ours, ours_with, theirs, theirs_with = uncontended()
    ours_c, theirs_c = contended(args.workers, args.rounds)
    updates = args.workers * args.rounds
    print("| contender | acquire(); release() | with lock: pass | "
          "%d workers x %s compound updates |" % (args.workers, format(args.rounds, ",")))
    print("|---|---:|---:|---:|")
    print("| pyshl sl.lock(i) | %.0f ns | %.0f ns | %.2f s (%s/s) |"
          % (ours * 1e9, ours_with * 1e9, ours_c, format(int(updates / ours_c), ",")))
    print("| multiprocessing.Lock | %.0f ns | %.0f ns | %.2f s (%s/s) |"
          % (theirs * 1e9, theirs_with * 1e9, theirs_c, format(int(updates / theirs_c), ",")))
    print("| ratio | %.2f× | %.2f× | %.2f× |"
          % (theirs / ours, theirs_with / ours_with, theirs_c / ours_c))


if __name__ == "__main__":
    main()
