"""Sparse segments: pages never written, which reading would allocate (on tmpfs).

A segment made with ftruncate alone has holes; on tmpfs reading a hole
allocates a page, and kills the reader with SIGBUS once /dev/shm is full.
pyshl refuses to read a list past its first hole, and its own lists (and
the standard library's) have none.  The full /dev/shm is a small tmpfs of a
private mount namespace: the real one is never filled.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from helpers import CAPTURE, SHM_DIR, std_shared_memory
from pyshl import ShareableList

PAGE = 4096

SHAPES = [[], [""] * 1000, [b""] * 3000, [None] * 5000, list(range(10000)),
          [True, False] * 5000, ["x" * 5000, "", b""] * 50, [1.5, "a" * 100000, None],
          ["é" * 3, b"\0" * 9000, -1] * 7]


def sparse_list_header(n, data_size):
    """The first bytes of a list of n items with a data area of data_size
    bytes: its item count, offsets (0, then data_size) and data size."""
    offsets = [0] * n + [data_size]
    return struct.pack("q%dq" % (n + 1), n, *offsets)


@pytest.fixture
def sparse_segment():
    """sparse_segment(size, *writes) makes a segment of `size` bytes with
    ftruncate alone, then pwrites each (offset, data): every other page is a hole."""
    paths = []

    def create(size, *writes):
        name = "psm_sparse_%d_%d" % (os.getpid(), len(paths))
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        paths.append(path)
        try:
            os.ftruncate(fd, size)
            for offset, data in writes:
                os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        return name

    yield create
    for path in paths:
        os.unlink(path)


def pyshl_cli(*args):
    return subprocess.run([sys.executable, "-m", "pyshl", *args], **CAPTURE, timeout=60)


def allocated(name):
    return os.stat(os.path.join(SHM_DIR, name)).st_blocks


def test_lists_written_by_pyshl_and_the_standard_library_have_no_hole():
    """Attaching finds no hole in a list either class made, so it attaches:
    pyshl's reserved pages count as holes until written."""
    makers = [ShareableList] + ([std_shared_memory.ShareableList] if std_shared_memory else [])
    arrays = [np.zeros(20000), np.zeros(9000, bool), np.arange(3000, dtype="i4")]
    for shape in SHAPES + arrays:
        made = [make(shape) for make in makers if make is ShareableList
                or not isinstance(shape, np.ndarray)]
        try:
            for sl in made:
                attached = ShareableList(name=sl.shm.name, readonly=True)
                assert attached.shm._mmap.first_hole == attached.shm.size, (sl, len(shape))
                attached.shm.close()
            # The pages written leave the bytes the standard library's.
            assert len({bytes(sl.shm.buf) for sl in made}) == 1
        finally:
            for sl in made:
                sl.shm.close()
                sl.shm.unlink()


def test_a_hole_in_the_data_area_is_refused(sparse_segment):
    # Two items of 8 KiB each: the header, the formats and the codes are
    # written, the data area's pages from 4096 on are not.
    n, data_size = 2, 4 * PAGE
    size = 8 * (n + 2) + data_size + 9 * n
    header = struct.pack("4q", n, 0, 2 * PAGE, data_size)
    tail = b"8192s\0\0\0" * n + bytes(n)
    name = sparse_segment(size, (0, header + bytes(PAGE - len(header))),
                          (size - len(tail), tail))
    before = allocated(name)
    with pytest.raises(ValueError, match=r"unwritten pages from offset 4096 where its layout "
                                         r"says there is data \(a sparse file\)"):
        ShareableList(name=name)
    with pytest.raises(ValueError, match="sparse file"):
        ShareableList(name=name, readonly=True)
    # The command line says so, in one line, and lists it as unreadable.
    show = pyshl_cli("show", name)
    assert show.returncode == 1 and show.stderr.count("\n") == 1, show.stderr
    assert "cannot read %r: it has unwritten pages from offset 4096" % name in show.stderr
    listed = pyshl_cli("ls").stdout
    line = next(x for x in listed.splitlines() if x.startswith(name + " "))
    assert "(unreadable)" in line and "sparse file" in line
    assert allocated(name) == before


def test_a_hole_in_the_header_or_the_offsets_is_refused(sparse_segment):
    never_written = sparse_segment(3 * PAGE)
    with pytest.raises(ValueError, match="from offset 0 where its header is"):
        ShareableList(name=never_written)
    # 1,000 items: their offsets run past the first page, the only one written.
    n = 1000
    size = 8 * (n + 2) + 8 * n + 9 * n
    many = sparse_segment(size, (0, sparse_list_header(n, 8 * n)[:PAGE]))
    before = allocated(many)
    with pytest.raises(ValueError, match="from offset 4096 where its layout says"):
        ShareableList(name=many)
    assert allocated(many) == before


# -- a full /dev/shm ---------------------------------------------------------------

FULL_SHM = r"""
import json, os, struct, subprocess, sys

PAGE = 4096
SHM = "/dev/shm"
SIZE = 40 * 1000 * 1000
report = {}

def write_sparse(name, header):
    fd = os.open(os.path.join(SHM, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.ftruncate(fd, SIZE)
    os.pwrite(fd, header, 0)
    os.close(fd)

# One item whose data area takes the whole segment; and as many items as fit,
# their offsets running far past the first page, the only one written.
write_sparse("psm_sparse_one", struct.pack("3q", 1, 0, SIZE - 33))
n = (SIZE - 16) // 17
write_sparse("psm_sparse_many", struct.pack("q", n) + bytes(PAGE - 8))
# A real list, which must still attach and show in a full /dev/shm.
from pyshl import ShareableList
real = ShareableList([1, "two", None], name="psm_sparse_real")

# Fill the tmpfs to the last block.
filler = os.open(os.path.join(SHM, "filler"), os.O_CREAT | os.O_WRONLY, 0o600)
for chunk in (bytes(1 << 20), bytes(PAGE)):
    try:
        while True:
            os.write(filler, chunk)
    except OSError:
        pass
os.close(filler)

def usage():
    st = os.statvfs(SHM)
    return [st.f_bfree, {n: os.stat(os.path.join(SHM, n)).st_blocks
                         for n in ("psm_sparse_one", "psm_sparse_many")}]

def run(*args):
    proc = subprocess.run([sys.executable] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, cwd="/")
    return [proc.returncode, proc.stdout, proc.stderr]

report["before"] = usage()
ATTACH = '''
import sys
from pyshl import ShareableList
try:
    ShareableList(name=sys.argv[1])
except ValueError as exc:
    print("ValueError:", exc)
'''
for name in ("psm_sparse_one", "psm_sparse_many"):
    report["attach " + name] = run("-c", ATTACH, name)
    report["show " + name] = run("-m", "pyshl", "show", name)
for args in (["ls"], ["ls", "--all"], ["ls", "--json"], ["show", "psm_sparse_real"]):
    report[" ".join(args)] = run("-m", "pyshl", *args)
report["after"] = usage()
real.shm.close()
real.shm.unlink()
print(json.dumps(report))
"""


def test_inspecting_sparse_segments_in_a_full_dev_shm_allocates_nothing(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a private tmpfs at /dev/shm needs root and unshare(1)")
    private_shm = "mount --make-rprivate / && mount -t tmpfs -o size=16m tmpfs /dev/shm"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", private_shm], **CAPTURE, timeout=60)
    if probe.returncode != 0:
        pytest.skip("cannot mount a private tmpfs at /dev/shm: %s" % probe.stderr.strip()[-200:])
    script = tmp_path / "full_shm.py"
    script.write_text(FULL_SHM)
    shell = "%s && exec %s %s" % (private_shm, sys.executable, script)
    proc = subprocess.run(["unshare", "-m", "sh", "-c", shell], **CAPTURE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for name, offset in (("psm_sparse_one", 4096), ("psm_sparse_many", 4096)):
        code, out, err = report["attach " + name]
        assert code == 0, err                 # not killed by SIGBUS (-7)
        assert "ValueError: shared memory segment %r has unwritten pages from offset %d" \
            % (name, offset) in out and "(a sparse file)" in out, out
        code, out, err = report["show " + name]
        assert code == 1 and "Traceback" not in err, (code, err)
        assert err.startswith("pyshl: cannot read %r: it has unwritten pages" % name), err
    for args in ("ls", "ls --all", "ls --json"):
        code, out, err = report[args]
        assert code == 0 and "Traceback" not in err, (args, code, err)
    lines = report["ls"][1].splitlines()
    for name in ("psm_sparse_one", "psm_sparse_many"):
        line = next(x for x in lines if x.startswith(name + " "))
        assert "(unreadable)" in line and "40,000,000" in line and "sparse file" in line
    assert "psm_sparse_real" in report["ls"][1]
    entries = {e["name"]: e for e in json.loads(report["ls --json"][1])}
    assert entries["psm_sparse_one"]["unreadable"] is True
    assert "sparse file" in entries["psm_sparse_one"]["error"]
    assert entries["psm_sparse_real"]["items"] == 3
    code, out, err = report["show psm_sparse_real"]
    assert code == 0 and "[1] 'two'" in out, err
    # Not one page allocated: the free blocks and the segments' blocks as before.
    assert report["after"] == report["before"]
    assert report["before"][0] == 0          # /dev/shm was full all along
