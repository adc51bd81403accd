"""Run every benchmark and keep its output for the documentation's performance page.

    pip install -e ".[bench]"
    python benchmarks/record.py                    # all four (about 10 minutes)
    python benchmarks/record.py bench_core          # one of them

Each benchmark runs as its own process; its Markdown output is written as it
is to docs/performance/results/NAME.md, after a line naming the machine, the
Python and the libraries that produced it.  benchmarks/charts.py draws the
performance page's charts from these files when the docs are built.  Run it on
an idle machine: the figures are medians, but other work still skews them.
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "docs" / "performance" / "results"
BENCHMARKS = ["bench_core", "bench_peers", "bench_locks", "bench_arrays"]


def _version(module):
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line():
    """The machine, Python and libraries, in one line of Markdown."""
    libraries = ", ".join("%s %s" % (name, version) for name, version in
                          [("pyshl", _version("pyshl")), ("NumPy", _version("numpy")),
                           ("atomicshm", _version("atomicshm"))] if version)
    return ("Machine: %s, %d cores, Linux %s; %s %s; %s; recorded %s."
            % (_cpu_model(), os.cpu_count(), platform.release(),
               platform.python_implementation(), platform.python_version(), libraries,
               datetime.date.today().isoformat()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="benchmarks to run (default: all of %s)" % ", ".join(BENCHMARKS))
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error("no benchmark named %s" % ", ".join(sorted(unknown)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.names or BENCHMARKS:
        print("…", name, file=sys.stderr, flush=True)
        output = subprocess.run([sys.executable, str(HERE / (name + ".py"))], cwd=str(HERE),
                                check=True, stdout=subprocess.PIPE,
                                universal_newlines=True).stdout
        text = "<!-- written by benchmarks/record.py -->\n%s\n\n%s" % (machine_line(),
                                                                      output.strip() + "\n")
        (RESULTS / (name + ".md")).write_text(text, encoding="utf-8")
        print(text)


if __name__ == "__main__":
    main()
