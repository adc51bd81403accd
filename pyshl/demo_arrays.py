"""Many worker processes fill compact shared NumPy arrays by name, with no lock.

The parent makes two shared arrays: an int32 histogram of request latencies
per endpoint (endpoints x latency bins, 4 bytes a count) and a float32 sum of
latencies per endpoint.  Workers attach them by name (``pyshl.attach``: no
dtype or shape passed along) and add their batches with ``pyshl.add_at``,
which is ``np.add.at`` made atomic across processes (GIL released, each
batch's repeats combined first).  A Pool task receives a third array, a
window of per-worker rows, as an argument: it travels by reference.

    pyshl demo --arrays [--workers 4] [--requests 2000000]

This module is meant to be read and copied: it is the whole example.
"""
import argparse
import multiprocessing as mp
import time

import numpy as np

import pyshl

ENDPOINTS = ["/", "/search", "/cart", "/checkout"]
EDGES_MS = np.array([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], dtype=np.float64)
BINS = len(EDGES_MS) + 1          # one more for "slower than the last edge"


def worker(names, rows, worker_id, requests, batch):
    histogram = pyshl.attach(names[0])          # int32 (endpoints, bins)
    totals = pyshl.attach(names[1])             # float32 (endpoints,)
    rng = np.random.default_rng(worker_id)
    seen = 0
    while seen < requests:
        n = min(batch, requests - seen)
        endpoint = rng.integers(0, len(ENDPOINTS), n)
        latencies = rng.lognormal(mean=2.0 + 0.3 * endpoint, sigma=1.0)     # milliseconds
        pyshl.add_at(histogram, (endpoint, np.searchsorted(EDGES_MS, latencies)), 1)
        pyshl.add_at(totals, endpoint, latencies)
        seen += n
    rows[worker_id] = seen           # this worker's own element: no atomics needed
    return seen


def run(workers=4, requests=2_000_000, batch=100_000, out=print):
    """Run the aggregation and print its report; return the histogram as a list."""
    with pyshl.zeros((len(ENDPOINTS), BINS), np.int32) as histogram, \
            pyshl.zeros(len(ENDPOINTS), np.float32) as totals, \
            pyshl.zeros(workers, np.int64) as rows:            # unlinked when the block ends
        names = (histogram.name, totals.name)
        start = time.perf_counter()
        with mp.get_context("spawn").Pool(workers) as pool:
            seen = sum(pool.starmap(worker, [(names, rows, w, requests, batch)
                                             for w in range(workers)]))
        elapsed = time.perf_counter() - start
        if not histogram.sum() == rows.sum() == seen == workers * requests:
            raise RuntimeError("lost updates")
        out("%d workers, %s requests in %.2f s: %.1f million updates/s into an int32 "
            "(%d x %d) and a float32 (%d,) array (including process start-up); "
            "no update lost" % (workers, format(seen, ","), elapsed, 2 * seen / elapsed / 1e6,
                                len(ENDPOINTS), BINS, len(ENDPOINTS)))
        labels = ["<%g" % e for e in EDGES_MS] + [">=%g" % EDGES_MS[-1]]
        out("%-10s %9s  %s" % ("endpoint", "mean ms", "  ".join("%7s" % x for x in labels)))
        per_endpoint = histogram.sum(axis=1)
        for k, name in enumerate(ENDPOINTS):
            out("%-10s %9.2f  %s" % (name, totals[k] / max(per_endpoint[k], 1),
                                     "  ".join("%7d" % c for c in histogram[k])))
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
