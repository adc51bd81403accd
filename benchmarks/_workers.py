"""What the benchmarks share: worker processes that start together, and their inputs."""
import multiprocessing as mp
import time

import numpy as np


def random_bins(worker, count, bins):
    """Worker `worker`'s `count` random bin numbers, the same in every run."""
    return np.random.default_rng(worker).integers(0, bins, count)


def expected_counts(workers, count, bins):
    """What the bins hold once every worker has added 1 for each of its numbers."""
    return sum(np.bincount(random_bins(w, count, bins), minlength=bins) for w in range(workers))


def run_workers(target, arguments, workers, method="spawn"):
    """Seconds from the moment `workers` processes running
    target(*arguments(worker, barrier, lock)) pass a barrier until the last ends
    (so that process start-up is not timed)."""
    ctx = mp.get_context(method)
    barrier = ctx.Barrier(workers + 1)
    lock = ctx.Lock()
    procs = [ctx.Process(target=target, args=arguments(w, barrier, lock))
             for w in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit("a worker of %s failed" % target.__name__)
    return time.perf_counter() - start


def updates_per_second(target, shared, workers, count, bins, method="spawn"):
    """Updates per second of `workers` processes running
    target(shared, lock, barrier, worker, count, bins)."""
    seconds = run_workers(target, lambda w, barrier, lock: (shared, lock, barrier, w, count,
                                                            bins), workers, method)
    return workers * count / seconds


def check_counts(values, workers, count, bins, label):
    """Stop the benchmark if `values` are not exactly the expected counts."""
    if list(values) != expected_counts(workers, count, bins).tolist():
        raise SystemExit("%s lost updates" % label)
