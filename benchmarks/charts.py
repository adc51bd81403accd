"""Draw the performance page's charts from the benchmarks' recorded output.

    python benchmarks/charts.py [RESULTS_DIR [OUT_DIR]]

Reads the Markdown tables that benchmarks/record.py kept (by default
docs/performance/results/*.md) and writes one SVG bar chart per figure into
OUT_DIR (by default docs/_generated/charts).  The docs build runs it, so the
charts always show the recorded tables, and nothing is drawn by hand.
Needs matplotlib.
"""
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "performance" / "results"
OUT = ROOT / "docs" / "_generated" / "charts"

SECONDS = {"ns": 1e-9, "µs": 1e-6, "\u03bcs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
COLOURS = {"pyshl": "#1b6ca8", "stdlib": "#c0392b", "floor": "#7f8c8d", "peer": "#e08e0b",
           "other": "#8e44ad", "extra": "#27ae60"}


def tables(text):
    """The Markdown tables of a benchmark's output: (caption, header, rows)."""
    found, caption, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        rule = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.startswith("|") and "-" in rule and set(rule) <= set("|-: "):
            header = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            found.append((caption, header, rows))
            continue
        if line:
            caption = line
        i += 1
    return found


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def value(cell):
    """A cell's number, times in seconds; None for a cell with no number ("—").
    A number followed by a unit this script does not know raises ValueError."""
    cell = cell.strip()
    number = re.match(r"-?[0-9][0-9,]*(?:\.[0-9]+)?", cell)
    if number is None:
        return None
    rest = cell[number.end():].lstrip()
    unit = re.match(r"(ns|µs|\u03bcs|us|ms|s)(?!\w)", rest)
    if unit is None and rest[:1].isalpha():
        raise ValueError("a cell with an unknown unit: %r" % cell)
    result = float(number.group(0).replace(",", ""))
    return result * SECONDS[unit.group(1)] if unit else result


def pick(found, *columns):
    """The first table whose header begins with these column names."""
    for caption, header, rows in found:
        if tuple(header[:len(columns)]) == columns:
            return caption, header, rows
    raise ValueError("no table with columns %s" % (columns,))


def machine(text):
    line = next((line for line in text.splitlines() if line.startswith("Machine:")), "")
    return line[len("Machine:"):].strip().rstrip(".")


def _seconds_label(seconds):
    for unit in ("s", "ms", "µs", "ns"):
        if seconds >= SECONDS[unit] or unit == "ns":
            return "%.3g %s" % (seconds / SECONDS[unit], unit)


def _plain_label(number):
    return format(number, ",.0f") if number >= 100 else "%.3g" % number


def bar_chart(path, title, labels, series, *, unit, log, note):
    """Horizontal grouped bars: one group per label, one bar per series.
    series: [(name, colour, values)]; unit: "s" (times) or a unit's name."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    matplotlib.rcParams["svg.hashsalt"] = "pyshl"     # the same SVG from the same table

    count = len(series)
    height = 0.8 / count
    lines = sum(len(textwrap.wrap(label, 34)) for label in labels)
    figure, axes = plt.subplots(figsize=(8.5, 0.6 + max(len(labels) * (0.22 + 0.2 * count),
                                                        lines * 0.17)))
    shown = [v for _, _, values in series for v in values if v]
    for k, (name, colour, values) in enumerate(series):
        positions = [i + (k - (count - 1) / 2) * height for i in range(len(labels))]
        widths = [v or 0 for v in values]
        if count == 1:     # one series: each bar in its contender's colour
            colour = [_colour(label, 0) for label in labels]
        axes.barh(positions, widths, height=height * 0.92, color=colour, label=name)
        for y, v in zip(positions, values):
            if v:
                text = _seconds_label(v) if unit == "s" else _plain_label(v)
                axes.text(v, y, " " + text, va="center", fontsize=7)
    axes.set_yticks(range(len(labels)))
    axes.set_yticklabels([textwrap.fill(label, 34) for label in labels], fontsize=8)
    axes.invert_yaxis()
    if log:
        axes.set_xscale("log")
        axes.set_xlim(min(shown) / 2, max(shown) * (30 if unit == "s" else 8))
    else:
        axes.set_xlim(0, max(shown) * 1.25)
    if unit == "s":
        axes.xaxis.set_major_formatter(
            matplotlib.ticker.FuncFormatter(lambda x, _: _seconds_label(x)))
        axes.set_xlabel("time, median (shorter is faster)%s" % (", log scale" if log else ""),
                        fontsize=8)
    else:
        axes.set_xlabel("%s, median (longer is faster)%s" % (unit, ", log scale" if log else ""),
                        fontsize=8)
    axes.tick_params(axis="x", labelsize=7)
    axes.set_title(title, fontsize=10)
    if count > 1:
        axes.legend(fontsize=7, loc="best")
    figure.text(0.01, 0.005, note, fontsize=6, color="#555555")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(str(path), format="svg", metadata={"Date": None})
    plt.close(figure)


def _colour(contender, k):
    """pyshl's rows in blues, the peers' in oranges, the standard library's in reds."""
    for prefix, shades in (("pyshl", ("#1b6ca8", "#5dade2")), ("atomicshm", ("#e08e0b", "#f5c16c")),
                           ("multiprocessing", ("#c0392b", "#e6867a")),
                           ("stdlib", ("#c0392b", "#e6867a"))):
        if contender.startswith(prefix):
            return shades[k % 2]
    return COLOURS["floor"]


def _column(rows, index):
    return [value(row[index]) if index < len(row) else None for row in rows]


def draw(results, out):
    """Every chart whose benchmark output is in `results`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def source(name):
        path = results / (name + ".md")
        if not path.exists():
            return None, None
        text = path.read_text(encoding="utf-8")
        return tables(text), "%s: %s" % (name, machine(text))

    def chart(name, title, labels, series, unit, log, note):
        path = out / (name + ".svg")
        bar_chart(path, title, labels, series, unit=unit, log=log, note=note)
        written.append(path)

    core, note = source("bench_core")
    if core:
        caption, header, rows = pick(core, "operation", "list / NumPy floor")
        rows = [row for row in rows if value(row[3]) is not None]   # the stdlib has the row
        items = re.match(r"[0-9,]+ items", caption)
        chart("core", "Time per operation" + (", %s" % items.group(0) if items else ""),
              [row[0] for row in rows],
              [("list / NumPy floor", COLOURS["floor"], _column(rows, 1)),
               ("standard ShareableList", COLOURS["stdlib"], _column(rows, 3)),
               ("pyshl", COLOURS["pyshl"], _column(rows, 4))], "s", True, note)

    peers, note = source("bench_peers")
    if peers:
        _, header, rows = pick(peers, "contender", "fetch_add")
        chart("peers-per-call", "One atomic operation per call, one process", header[1:5],
              [(row[0], _colour(row[0], k), [v * 1e-9 if v else None for v in
                                             (value(cell) for cell in row[1:5])])
               for k, row in enumerate(rows)], "s", True, note)
        _, header, rows = pick(peers, "case", "pyshl add_at")
        chart("peers-add-at", "add_at, one process", [row[0] for row in rows],
              [("pyshl add_at", COLOURS["pyshl"], _column(rows, 1)),
               ("private np.add.at", COLOURS["floor"], _column(rows, 2))],
              "million updates/s", False, note)
        caption, header, rows = pick(peers, "contender", "updates/s")
        chart("peers-workers", "Shared counters: %s" % caption.split(";")[0].rstrip(":"),
              [row[0] for row in rows],
              [("updates/s", COLOURS["pyshl"], _column(rows, 1))], "updates/s", True, note)

    locks, note = source("bench_locks")
    if locks:
        _, header, rows = pick(locks, "contender", "acquire(); release()")
        rows = [row for row in rows if row[0] != "ratio"]
        chart("locks", "sl.lock(i) against multiprocessing.Lock", header[1:4],
              [(row[0], _colour(row[0], k), [value(cell) for cell in row[1:4]])
               for k, row in enumerate(rows)], "s", True, note)

    arrays, note = source("bench_arrays")
    if arrays:
        _, header, rows = pick(arrays, "case", "pyshl.add_at")
        chart("arrays-add-at", "add_at into a shared array, one process",
              [row[0] for row in rows],
              [(header[k], colour, _column(rows, k))
               for k, colour in ((1, COLOURS["pyshl"]), (2, COLOURS["floor"]),
                                 (3, COLOURS["stdlib"]), (4, COLOURS["extra"]))],
              "million updates/s", True, note)
        _, header, rows = pick(arrays, "array", "SharedMemory + np.ndarray (by hand)")
        chart("arrays-attach", "Attaching to a shared array by name", [row[0] for row in rows],
              [(header[1], COLOURS["floor"], [v * 1e-6 if v else None for v in _column(rows, 1)]),
               (header[2], COLOURS["pyshl"], [v * 1e-6 if v else None for v in _column(rows, 2)])],
              "s", False, note)
        caption, header, rows = pick(arrays, "how", "M updates/s")
        chart("arrays-workers", caption.split("(")[0].strip(), [row[0] for row in rows],
              [("million updates/s", COLOURS["pyshl"], _column(rows, 1))],
              "million updates/s", False, note)
    return written


def main(argv):
    results = Path(argv[1]) if len(argv) > 1 else RESULTS
    out = Path(argv[2]) if len(argv) > 2 else OUT
    for path in draw(results, out):
        print(path)


if __name__ == "__main__":
    main(sys.argv)
