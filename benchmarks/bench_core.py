"""The core benchmark: pyshl, the stdlib ShareableList and a plain list side by side.

    python benchmarks/bench_core.py            # a million ints (about a minute)
    python benchmarks/bench_core.py -n 100000  # quicker

Prints a Markdown table of medians and ratios (the performance page's table).
"""
import argparse
import sys

from pyshl import _bench


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="items (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=7, help="repeats per timing (default 7)")
    args = parser.parse_args()
    rows = _bench.run(args.n, args.repeat,
                      progress=lambda label: print("…", label, file=sys.stderr, flush=True))
    print(_bench.table(rows, args.n))


if __name__ == "__main__":
    main()
