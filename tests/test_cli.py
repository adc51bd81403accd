"""The command line, run as real subprocesses."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyshl import ShareableList


def pyshl(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "pyshl", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_ls_lists_shareable_lists(make, raw_segment):
    sl = make(list(range(50)) + ["s", None])
    other = raw_segment(b"not a list")
    proc = pyshl("ls")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith(sl.shm.name))
    assert "52" in line and "int 50, None 1, str 1" in line and format(sl.shm.size, ",") in line
    assert other not in proc.stdout
    everything = pyshl("ls", "--all")
    assert other in everything.stdout and "(not a ShareableList)" in everything.stdout


def test_ls_json(make, raw_segment):
    sl = make([1.5, b"x"])
    other = raw_segment(b"\0" * 4)
    entries = {e["name"]: e for e in json.loads(pyshl("ls", "--all", "--json").stdout)}
    assert entries[sl.shm.name]["items"] == 2
    assert entries[sl.shm.name]["types"] == {"float": 1, "bytes": 1}
    assert entries[other]["items"] is None and "too small" in entries[other]["error"]


def test_show(make):
    sl = make(list(range(100)) + [float("nan"), b"\x01\xff", "é", True])
    proc = pyshl("show", sl.shm.name, "--limit", "10")
    assert proc.returncode == 0, proc.stderr
    assert "104 items (int 100, float 1, bool 1, str 1, bytes 1)" in proc.stdout
    assert "[0] 0" in proc.stdout and "… 94 more …" in proc.stdout
    assert "[101] b'\\x01\\xff'" in proc.stdout and "[102] 'é'" in proc.stdout
    data = json.loads(pyshl("show", sl.shm.name, "--json", "--limit", "8").stdout)
    assert data["truncated"] is True and data["format"] is None
    assert data["values"][0] == [0, 0]
    assert data["values"][-4:] == [[100, {"float": "nan"}], [101, {"bytes": "01ff"}],
                                   [102, "é"], [103, True]]
    short = json.loads(pyshl("show", make([1, "a"]).shm.name, "--json").stdout)
    assert short["format"] == "q8s" and short["values"] == [[0, 1], [1, "a"]]


def test_show_reports_corrupt_items_without_failing(raw_segment):
    import struct
    data = struct.pack("qqqq", 2, 0, 8, 16) + struct.pack("qq", 7, 0) + b"q".ljust(8, b"\0") \
        + b"zz".ljust(8, b"\0") + bytes(2)
    name = raw_segment(data)
    proc = pyshl("show", name)
    assert proc.returncode == 0
    assert "[0] 7" in proc.stdout and "[1] <corrupt:" in proc.stdout
    assert "corrupt 1" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("show", "psm_missing_%d" % os.getpid()), "no shared memory segment named"),
    (("rm", "psm_missing_%d" % os.getpid()), "no shared memory segment named"),
    (("rm", "a/b"), "cannot remove"),
])
def test_failures_exit_1_with_a_message(args, message):
    proc = pyshl(*args)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_show_of_a_segment_that_is_not_a_list(raw_segment):
    proc = pyshl("show", raw_segment(b"x" * 3))
    assert proc.returncode == 1 and "is not a ShareableList" in proc.stderr


def test_rm_removes_and_reports(raw_segment):
    name = ShareableList([1], track=False).shm.name
    proc = pyshl("rm", name, "psm_missing_%d" % os.getpid())
    assert proc.returncode == 1
    assert "removed %s" % name in proc.stdout
    assert not os.path.exists("/dev/shm/" + name)


@pytest.mark.parametrize("args", [(), ("nope",), ("show",), ("show", "x", "--limit", "0"),
                                  ("bench", "-n", "x"), ("rm",)])
def test_bad_usage_exits_2_or_1(args):
    proc = pyshl(*args)
    assert proc.returncode in (1, 2) and proc.stderr
    if args != ("show", "x", "--limit", "0"):
        assert proc.returncode == 2


@pytest.mark.parametrize("command", ["ls", "show", "rm", "bench", "demo"])
def test_help_explains_each_command(command):
    proc = pyshl(command, "--help")
    assert proc.returncode == 0 and "usage: pyshl " + command in proc.stdout
    assert len(proc.stdout.splitlines()) > 4
    assert command in pyshl("--help").stdout


def test_bench_self_checks_and_prints_a_table():
    proc = pyshl("bench", "-n", "2000", "--repeat", "1")
    assert proc.returncode == 0, proc.stderr
    assert "self-check: ok" in proc.stdout
    assert "| count(absent) |" in proc.stdout and "[6/6]" in proc.stderr


def test_demo_aggregates_without_losing_updates():
    proc = pyshl("demo", "--workers", "2", "--requests", "30000")
    assert proc.returncode == 0, proc.stderr
    assert "60,000 requests" in proc.stdout and "no update lost" in proc.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "pyshl"
    assert script.exists()
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage: pyshl" in proc.stdout
