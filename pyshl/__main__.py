"""python -m pyshl: a self-check against the standard library, then a speed table."""

import argparse
import sys
from multiprocessing import shared_memory as std_shared_memory

from pyshl import ShareableList, _bench

SAMPLE = [42, -2**63, 2.5, True, False, None, "text", "x" * 8, b"bytes", b""]


def self_check():
    """Create, attach and write across pyshl and the stdlib; raise on any mismatch."""
    ours = ShareableList(SAMPLE)
    theirs = std_shared_memory.ShareableList(SAMPLE)
    try:
        if bytes(ours.shm.buf) != bytes(theirs.shm.buf) or ours.format != theirs.format:
            raise AssertionError("pyshl's segment differs from the standard library's")
        std_view = std_shared_memory.ShareableList(name=ours.shm.name)
        try:
            if list(std_view) != SAMPLE:
                raise AssertionError("the stdlib reads a pyshl list wrongly")
            std_view[0] = "written"
        finally:
            std_view.shm.close()
        our_view = ShareableList(name=theirs.shm.name)
        try:
            if our_view.tolist() != SAMPLE:
                raise AssertionError("pyshl reads a stdlib list wrongly")
        finally:
            our_view.close()
        if ours[0] != "written" or ours.count(None) != 1 or ours.index(b"bytes") != 8:
            raise AssertionError("a write by the stdlib is not seen by pyshl")
        with ShareableList(["ééééé"]) as text:
            if text[0] != "ééééé":
                raise AssertionError("non-ASCII text does not round-trip")
    finally:
        ours.close()
        ours.unlink()
        theirs.shm.close()
        theirs.shm.unlink()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m pyshl",
        description="Check pyshl against the standard library's ShareableList on this "
                    "machine, then time both side by side.")
    parser.add_argument("-n", type=int, default=100_000,
                        help="items in the speed table (default 100,000; "
                             "benchmarks/bench_core.py runs a million)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats per timing (default 5)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        parser.error("-n and --repeat must be positive")

    self_check()
    print("self-check: ok (pyshl and the stdlib read and write each other's lists, "
          "byte for byte)")
    rows = _bench.run(args.n, args.repeat,
                      progress=lambda label: print("  timing", label, "…", file=sys.stderr,
                                                   flush=True))
    print()
    print(_bench.table(rows, args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
