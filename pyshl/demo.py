"""Many worker processes aggregate into one shared histogram, with no lock.

Each worker measures synthetic request latencies, bins them and adds its
counts into a shared pyshl ShareableList with ``add_at`` (atomic, batched,
GIL released).  Workers also bump a shared "requests seen" counter with
``fetch_add``, and record their own totals in a per-worker row that the parent
reduces with ``view()`` (no atomics needed when each worker owns its slots).

    pyshl demo [--workers 4] [--requests 2000000]     # or: python -m pyshl demo

This module is meant to be read and copied: it is the whole example.
"""
import argparse
import multiprocessing as mp
import time

import numpy as np

from pyshl import ShareableList

EDGES_MS = np.array([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], dtype=np.float64)
BINS = len(EDGES_MS) + 1          # one more for "slower than the last edge"
COUNTER = BINS                    # slot: requests seen, across all workers
ROWS = COUNTER + 1                # per-worker rows start here: [requests, total ms]


def worker(shared, worker_id, requests, batch):
    rng = np.random.default_rng(worker_id)
    seen = 0
    total_ms = 0.0
    while seen < requests:
        n = min(batch, requests - seen)
        latencies = rng.lognormal(mean=2.5, sigma=1.0, size=n)    # milliseconds
        shared.add_at(np.searchsorted(EDGES_MS, latencies), 1)   # the histogram
        shared.fetch_add(COUNTER, n)                              # a shared counter
        seen += n
        total_ms += float(latencies.sum())
    row = ROWS + 2 * worker_id                                     # this worker's own slots
    shared[row] = seen
    shared[row + 1] = total_ms


def run(workers=4, requests=2_000_000, batch=100_000, out=print):
    """Run the aggregation and print its report; return the histogram as a list."""
    layout = [0] * (BINS + 1) + [0, 0.0] * workers
    with ShareableList(layout) as shared:           # unlinked when the block ends
        ctx = mp.get_context("spawn")
        start = time.perf_counter()
        procs = [ctx.Process(target=worker, args=(shared, w, requests, batch))
                 for w in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        if any(p.exitcode for p in procs):
            raise RuntimeError("a worker failed")

        histogram = shared.view(0, BINS)            # zero-copy int64 array
        per_worker = shared.tolist()[ROWS:]
        seen = sum(per_worker[0::2])
        if not histogram.sum() == shared[COUNTER] == seen == workers * requests:
            raise RuntimeError("lost updates")

        out("%d workers, %s requests in %.2f s: %.1f million histogram updates/s "
            "(including process start-up); no update lost"
            % (workers, format(seen, ","), elapsed, seen / elapsed / 1e6))
        out("mean latency %.2f ms" % (sum(per_worker[1::2]) / seen))
        labels = ["<%g ms" % e for e in EDGES_MS] + [">=%g ms" % EDGES_MS[-1]]
        for label, count in zip(labels, histogram):
            out("  %9s %12s  %s" % (label, format(int(count), ","),
                                    "#" * int(50 * count / max(histogram.max(), 1))))
        return histogram.tolist()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=2_000_000, help="per worker")
    parser.add_argument("--batch", type=int, default=100_000)
    args = parser.parse_args(argv)
    run(args.workers, args.requests, args.batch)


if __name__ == "__main__":
    main()
