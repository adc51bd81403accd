"""The command line, run as real subprocesses."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyshl as pyshl_package
from helpers import CAPTURE, SHM_DIR, run_python
from pyshl import ShareableList


def pyshl(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "pyshl", *args], **CAPTURE, timeout=timeout)


def ls_json(*args):
    proc = pyshl("ls", "--json", *args, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {e["name"]: e for e in json.loads(proc.stdout)}


def assert_one_line_failure(proc):
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_ls_lists_shareable_lists(make, raw_segment):
    sl = make(list(range(50)) + ["s", None])
    other = raw_segment(b"not a list")
    proc = pyshl("ls")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith(sl.shm.name))
    assert "52" in line and "int 50, None 1, str 1" in line and format(sl.shm.size, ",") in line
    assert other not in proc.stdout
    everything = pyshl("ls", "--all")
    assert other in everything.stdout and "(not a list or array)" in everything.stdout


def test_ls_json(make, raw_segment):
    sl = make([1.5, b"x"])
    other = raw_segment(b"\0" * 4)
    entries = ls_json("--all")
    assert entries[sl.shm.name]["items"] == 2
    assert entries[sl.shm.name]["types"] == {"float": 1, "bytes": 1}
    assert "error" not in entries[sl.shm.name]
    assert "items" not in entries[other] and "too small" in entries[other]["error"]


def test_show(make):
    sl = make(list(range(100)) + [float("nan"), b"\x01\xff", "é", True])
    proc = pyshl("show", sl.shm.name, "--limit", "10")
    assert proc.returncode == 0, proc.stderr
    assert "104 items (int 100, float 1, bool 1, str 1, bytes 1)" in proc.stdout
    assert "[0] 0" in proc.stdout and "… 94 more …" in proc.stdout
    assert "[101] b'\\x01\\xff'" in proc.stdout and "[102] 'é'" in proc.stdout
    data = json.loads(pyshl("show", sl.shm.name, "--json", "--limit", "8").stdout)
    assert data["truncated"] is True
    assert data["format"] == "qqqqd8s8sxxxxxxx?"       # the format of the items shown
    assert data["values"][0] == [0, 0]
    assert data["values"][-4:] == [[100, {"float": "nan"}], [101, {"bytes": "01ff"}],
                                   [102, "é"], [103, True]]
    short = json.loads(pyshl("show", make([1, "a"]).shm.name, "--json").stdout)
    assert short["format"] == "q8s" and short["values"] == [[0, 1], [1, "a"]]
    assert short["truncated"] is False


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
    (("show", "x" * 300), "cannot inspect"),
    (("rm", "x" * 300), "cannot remove"),
])
def test_failures_exit_1_with_a_message(args, message):
    proc = pyshl(*args)
    assert_one_line_failure(proc)
    assert message in proc.stderr


@pytest.mark.parametrize("data", [b"x" * 3, b"not a list: its count is too big"])
def test_show_of_a_segment_that_is_not_a_list(raw_segment, data):
    proc = pyshl("show", raw_segment(data))
    assert_one_line_failure(proc)
    assert "is neither a ShareableList nor a shared array: " in proc.stderr
    assert proc.stderr.count("ShareableList") == 1      # said once, not twice


def test_a_zero_filled_block_is_not_an_empty_list(make, raw_segment):
    zeros = raw_segment(bytes(4096))      # its item count reads as 0
    empty = make([])
    assert empty.shm.size == 16
    listed = pyshl("ls").stdout
    assert zeros not in listed and empty.shm.name in listed
    line = next(x for x in pyshl("ls", "--all").stdout.splitlines() if x.startswith(zeros))
    assert "(not a list or array)" in line
    assert "4,096 bytes, but a list of 0 items with a 0-byte data area is 16 bytes" in line
    entries = ls_json("--all")
    assert "16 bytes" in entries[zeros]["error"] and entries[empty.shm.name]["items"] == 0
    proc = pyshl("show", zeros)
    assert_one_line_failure(proc)
    assert "is neither a ShareableList nor a shared array: 4,096 bytes" in proc.stderr
    assert pyshl("show", empty.shm.name).returncode == 0


def test_json_holds_no_null_where_the_text_shows_a_value(make, raw_segment):
    sl = make(list(range(30)))
    other = raw_segment(b"x" * 3)
    entries = ls_json("--all")
    assert None not in entries[sl.shm.name].values() and "error" not in entries[sl.shm.name]
    assert None not in entries[other].values()
    assert "items" not in entries[other] and "types" not in entries[other]
    text = pyshl("show", sl.shm.name, "--limit", "6").stdout
    data = json.loads(pyshl("show", sl.shm.name, "--json", "--limit", "6").stdout)
    assert None not in data.values() and "error" not in data
    assert data["truncated"] is True and data["format"] == "q" * 6
    assert "format:  qqqqqq…" in text


def test_rm_removes_and_reports(raw_segment):
    name = ShareableList([1], track=False).shm.name
    proc = pyshl("rm", name, "psm_missing_%d" % os.getpid())
    assert proc.returncode == 1
    assert "removed %s" % name in proc.stdout
    assert not os.path.exists("/dev/shm/" + name)


@pytest.mark.parametrize("args", [(), ("nope",), ("show",), ("bench", "-n", "x"), ("rm",),
                                  ("show", "x", "--limit", "0"), ("bench", "-n", "0"),
                                  ("bench", "--repeat", "-1"), ("demo", "--workers", "0"),
                                  ("demo", "--requests", "0")])
def test_bad_usage_exits_2(args):
    proc = pyshl(*args)
    assert proc.returncode == 2 and "usage: pyshl" in proc.stderr
    if "0" in args or "-1" in args:
        assert "must be a positive integer" in proc.stderr


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


def test_array_demo_aggregates_without_losing_updates():
    proc = pyshl("demo", "--arrays", "--workers", "2", "--requests", "30000")
    assert proc.returncode == 0, proc.stderr
    assert "60,000 requests" in proc.stdout and "no update lost" in proc.stdout
    assert "/checkout" in proc.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "pyshl"
    assert script.exists()
    proc = subprocess.run([str(script), "--help"], **CAPTURE, timeout=60)
    assert proc.returncode == 0 and "usage: pyshl" in proc.stdout


# -- what /dev/shm may hold besides segments ---------------------------------------

@pytest.fixture
def not_segments(make):
    """Entries in /dev/shm that are not segments, {name: what they are}; removed after.

    Symlinks (dangling, a loop, one to a real list), a directory and a FIFO.
    """
    prefix = "psm_clitest_%d_" % os.getpid()
    target = make([1, 2, 3])
    made = {}

    def entry(suffix, what, create):
        create(os.path.join(SHM_DIR, prefix + suffix))
        made[prefix + suffix] = what

    try:
        entry("dangling", "symlink", lambda path: os.symlink(prefix + "nowhere", path))
        entry("loop_a", "symlink", lambda path: os.symlink(prefix + "loop_b", path))
        entry("loop_b", "symlink", lambda path: os.symlink(prefix + "loop_a", path))
        entry("to_list", "symlink", lambda path: os.symlink(target.shm.name, path))
        entry("dir", "directory", os.mkdir)
        entry("fifo", "fifo", os.mkfifo)       # opening it would block: nothing may
        yield made
        assert target.tolist() == [1, 2, 3]
    finally:
        for name, what in made.items():
            (os.rmdir if what == "directory" else os.unlink)(os.path.join(SHM_DIR, name))


def test_ls_lists_no_entry_that_is_not_a_segment(not_segments):
    for args in ((), ("--all",), ("--json",), ("--all", "--json")):
        proc = pyshl("ls", *args, timeout=60)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
        if "--all" not in args:
            assert not any(name in proc.stdout for name in not_segments), args
    lines = pyshl("ls", "--all", timeout=60).stdout.splitlines()
    for name, what in not_segments.items():
        line = next(x for x in lines if x.startswith(name + " "))
        assert "(not a list or array)" in line and what in line.lower()
    entries = ls_json("--all")
    for name, what in not_segments.items():
        assert what in entries[name]["error"].lower()
        assert not {"items", "types", "bytes"} & set(entries[name])


def test_show_and_rm_refuse_entries_that_are_not_segments(not_segments):
    for name, what in not_segments.items():
        proc = pyshl("show", name, timeout=60)
        assert_one_line_failure(proc)
        assert "neither a ShareableList" in proc.stderr and what in proc.stderr.lower()
    proc = pyshl("rm", *not_segments, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and not proc.stdout
    assert len(proc.stderr.splitlines()) == len(not_segments)
    assert all(os.path.lexists(os.path.join(SHM_DIR, name)) for name in not_segments)


# -- inspecting only reads ---------------------------------------------------------

def as_nobody(*args):
    """Run this Python as user and group 65534 (nobody), with no other groups."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, *args], **CAPTURE, timeout=60)


def skip_unless_nobody_runs_pyshl():
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running pyshl as another user needs root and setpriv")
    probe = as_nobody("-c", "import pyshl")
    if probe.returncode != 0:
        pytest.skip("user 65534 cannot import pyshl with %s (the venv and the source tree "
                    "must be traversable by that user): %s"
                    % (sys.executable, probe.stderr.strip()[-200:]))


def test_ls_and_show_work_for_a_user_who_may_only_read(make):
    skip_unless_nobody_runs_pyshl()
    sl = make([1, "two", 3.0, None, b"five"])
    path = Path(SHM_DIR, sl.shm.name)
    os.chmod(path, 0o644)                   # that user may read it, never write it
    before = path.read_bytes()
    proc = as_nobody("-m", "pyshl", "ls")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith(sl.shm.name))
    assert "int 1, float 1, None 1, str 1, bytes 1" in line
    proc = as_nobody("-m", "pyshl", "show", sl.shm.name)
    assert proc.returncode == 0, proc.stderr
    assert "[1] 'two'" in proc.stdout and "[4] b'five'" in proc.stdout
    assert path.read_bytes() == before


def test_another_users_private_list_is_unreadable_not_said_not_a_list(make):
    skip_unless_nobody_runs_pyshl()
    sl = make([1, "two"])
    path = Path(SHM_DIR, sl.shm.name)
    os.chown(path, 4321, 4321)              # another user's, whom 65534 is not
    os.chmod(path, 0o600)
    proc = as_nobody("-m", "pyshl", "show", sl.shm.name)
    assert_one_line_failure(proc)
    assert "cannot read %r: permission denied" % sl.shm.name in proc.stderr, proc.stderr
    assert "neither a ShareableList" not in proc.stderr
    for args in ((), ("--all",)):
        proc = as_nobody("-m", "pyshl", "ls", *args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        line = next(x for x in proc.stdout.splitlines() if x.startswith(sl.shm.name))
        assert "(unreadable)" in line and "permission denied" in line and "4321" in line
    proc = as_nobody("-m", "pyshl", "ls", "--json")
    entry = next(e for e in json.loads(proc.stdout) if e["name"] == sl.shm.name)
    assert entry["unreadable"] is True and "permission denied" in entry["error"]


def test_show_attaches_once_and_read_only(make):
    sl = make(list(range(40)))
    proc = run_python("""
        import pyshl._shm
        attaches = []
        attach = pyshl._shm.SharedMemory.__init__

        def counted(self, name=None, *args, **kwargs):
            attaches.append(kwargs.get("readonly"))
            attach(self, name, *args, **kwargs)

        pyshl._shm.SharedMemory.__init__ = counted
        from pyshl.__main__ import main
        assert main(["show", %r]) == 0
        assert attaches == [True], attaches
        attaches.clear()
        assert main(["ls"]) == 0
        assert attaches and all(attaches), attaches
    """ % sl.shm.name)
    assert "40 items (int 40)" in proc.stdout


@pytest.mark.skipif(sys.version_info < (3, 7),
                    reason="Python 3.6 has no module __getattr__: import pyshl imports NumPy")
def test_ls_show_and_rm_do_not_import_numpy(make):
    assert run_python("import pyshl, sys; print('numpy' in sys.modules)").stdout == "False\n"
    name = make([1.5, "x"]).shm.name
    for args in (("ls", "--all"), ("show", name), ("rm", "psm_missing_%d" % os.getpid())):
        proc = run_python("""
            import runpy, sys
            sys.argv = ["pyshl"] + %r
            try:
                runpy.run_module("pyshl", run_name="__main__", alter_sys=True)
            except SystemExit:
                pass
            print("IMPORTED", " ".join(sorted(sys.modules)), file=sys.stderr)
        """ % list(args))
        imported = proc.stderr.rpartition("IMPORTED ")[2].split()
        assert "pyshl._segments" in imported, args
        assert not [m for m in imported if m.split(".")[0] == "numpy"], args


def test_version_matches_the_installed_metadata():
    # pip reads the installed metadata on every Python (importlib.metadata is 3.8+).
    shown = subprocess.run([sys.executable, "-m", "pip", "show", "pyshl"],
                           **CAPTURE, check=True).stdout
    installed = next(line.split(":", 1)[1].strip() for line in shown.splitlines()
                     if line.startswith("Version:"))
    proc = pyshl("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "pyshl %s" % installed
    import pyshl as package
    assert package.__version__ == installed


def test_an_unbuilt_source_tree_explains_itself_in_one_line(tmp_path):
    # `python -m pyshl` from the root of a clone imports the source folder; if
    # its extension is not built there, one line says so.  (-S keeps any
    # installed pyshl out of the way.)
    package = Path(pyshl_package.__file__).resolve().parent
    (tmp_path / "pyshl").mkdir()
    for source in package.glob("*.py"):
        (tmp_path / "pyshl" / source.name).write_text(source.read_text())
    proc = subprocess.run([sys.executable, "-S", "-m", "pyshl", "ls"], cwd=str(tmp_path),
                          **CAPTURE, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "compiled core is not built" in lines[0] and "pip install ." in lines[0]


# -- shared arrays, and who maps what --------------------------------------------

def test_ls_and_show_describe_arrays_and_who_maps_them(shared):
    a = shared(pyshl_package.full, (3, 4), 2.5, "f4")
    b = shared(pyshl_package.zeros, 5, ">i8")
    entries = ls_json()
    assert entries[a.name]["kind"] == "array" and entries[a.name]["dtype"] == "float32"
    assert entries[a.name]["shape"] == [3, 4] and entries[a.name]["elements"] == 12
    assert entries[b.name]["dtype"] == ">int64"
    assert os.getpid() in entries[a.name]["mapped_by"]
    line = next(x for x in pyshl("ls").stdout.splitlines() if x.startswith(a.name))
    assert "array" in line and "float32 (3, 4)" in line and str(os.getpid()) in line
    shown = pyshl("show", a.name)
    assert shown.returncode == 0, shown.stderr
    assert "float32 (3, 4), 12 elements" in shown.stdout
    assert "min 2.5, max 2.5, sum 30.0" in shown.stdout
    assert "by pid %d" % os.getpid() in shown.stdout
    data = json.loads(pyshl("show", a.name, "--json", "--limit", "3").stdout)
    assert data["summary"] == {"min": 2.5, "max": 2.5, "sum": 30.0}
    assert data["first"] == [2.5] * 3 and data["truncated"]


@pytest.mark.parametrize("header", [
    b"{'descr': 'O', 'shape': (999,)}",
    b"{'descr': '|O', 'fortran_order': False, 'shape': (0,), }",
    b"{'descr': [('x', '<f8'), ('o', '|O')], 'fortran_order': False, 'shape': (0,), }",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (0x" + b"f" * 4000 + b",), }",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (1_" + b"1" * 4000 + b",), }",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (0, 99999999999999999999), }",
])
def test_a_hostile_array_header_is_reported_not_crashed_on(raw_segment, header):
    import struct
    name = raw_segment(b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header)
    entries = ls_json("--all")
    assert "kind" not in entries[name] and "error" in entries[name]
    proc = pyshl("show", name)
    assert_one_line_failure(proc)


def test_rm_refuses_a_mapped_segment_unless_forced(shared):
    a = shared(pyshl_package.zeros, 3)
    proc = pyshl("rm", a.name)
    assert_one_line_failure(proc)
    assert "pid %d maps it" % os.getpid() in proc.stderr and os.path.exists(
        os.path.join(SHM_DIR, a.name))
    proc = pyshl("rm", "--force", a.name)
    assert proc.returncode == 0 and not os.path.exists(os.path.join(SHM_DIR, a.name))
    a[0] = 1                                  # the memory stays while mapped


@pytest.mark.parametrize("args", [("--unused", "x"), ("--unused", "--force"),
                                  ("--older-than", "1h", "x"), ("--dry-run", "x"),
                                  ("--any-name", "x"), ("--unused", "--older-than", "soon"),
                                  ("--unused", "--older-than", "1e308d")])
def test_rm_usage_errors(args):
    proc = pyshl("rm", *args)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_rm_unused_in_a_private_dev_shm(tmp_path):
    # A /dev/shm of its own (a private mount namespace), so that removing
    # every unused segment cannot touch another test's.
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a private tmpfs at /dev/shm needs root and unshare(1)")
    script = tmp_path / "unused.py"
    script.write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        import numpy as np
        import pyshl
        from pyshl.__main__ import main

        old = pyshl.zeros(3, name="psm_old", track=False)
        os.utime("/dev/shm/psm_old", (time.time() - 7200, time.time() - 7200))
        kept = pyshl.zeros(3, name="psm_kept", track=False)   # mapped by this process
        del old
        pyshl.ShareableList([1, 2], name="psm_list", track=False).close()
        young = pyshl.zeros(3, name="psm_young", track=False)
        del young
        named = pyshl.zeros(3, name="named_by_hand", track=False)   # not psm_*: kept
        del named
        held = pyshl.zeros(3, name="psm_held (deleted)", track=False)   # mapped: kept
        with open("/dev/shm/other.bin", "wb") as f:
            f.write(b"not a segment pyshl knows")
        out = subprocess.run([sys.executable, "-m", "pyshl", "rm", "--unused", "--dry-run"],
                             stdout=subprocess.PIPE, universal_newlines=True).stdout
        assert sorted(out.split()) == sorted("would remove psm_list would remove psm_old "
                                             "would remove psm_young".split()), out
        assert sorted(os.listdir("/dev/shm")) == ["named_by_hand", "other.bin",
                                                  "psm_held (deleted)", "psm_kept",
                                                  "psm_list", "psm_old", "psm_young"]
        out = subprocess.run([sys.executable, "-m", "pyshl", "rm", "--unused",
                              "--older-than", "1h"],
                             stdout=subprocess.PIPE, universal_newlines=True).stdout
        assert out.split() == ["removed", "psm_old"], out
        out = subprocess.run([sys.executable, "-m", "pyshl", "rm", "--unused"],
                             stdout=subprocess.PIPE, universal_newlines=True).stdout
        assert sorted(os.listdir("/dev/shm")) == ["named_by_hand", "other.bin",
                                                  "psm_held (deleted)", "psm_kept"], out
        out = subprocess.run([sys.executable, "-m", "pyshl", "rm", "--unused", "--any-name"],
                             stdout=subprocess.PIPE, universal_newlines=True).stdout
        assert sorted(os.listdir("/dev/shm")) == ["other.bin", "psm_held (deleted)",
                                                  "psm_kept"], out
        kept.unlink()
        held.unlink()
        print("ok")
    """))
    private_shm = "mount --make-rprivate / && mount -t tmpfs -o size=64m tmpfs /dev/shm"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", private_shm], **CAPTURE, timeout=60)
    if probe.returncode != 0:      # not root, or a chroot (CI's for 3.14 and 3.15)
        pytest.skip("cannot mount a private tmpfs at /dev/shm: %s" % probe.stderr.strip()[-200:])
    proc = subprocess.run(["unshare", "-m", "sh", "-c", "%s && exec %s %s"
                           % (private_shm, sys.executable, script)], **CAPTURE, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
