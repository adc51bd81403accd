"""A segment is untrusted input: corrupt ones raise ValueError, never crash."""
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CAPTURE, run_python
from pyshl import ShareableList

Q = struct.Struct("q")
# index() of a missing value, as 3.13 and 3.14+ word it.
INDEX_MISSES = ("not in this container", "ShareableList.index(x): x not in list")
HERE = Path(__file__).resolve().parent


def layout(items_offsets, data, formats, codes, count=None, pad=0):
    """Raw segment bytes from explicit parts (count defaults to len(formats))."""
    n = len(formats) if count is None else count
    header = struct.pack("q", n) + b"".join(Q.pack(o) for o in items_offsets)
    fmt = b"".join(f.ljust(8, b"\0") for f in formats)
    return header + data + fmt + bytes(c & 0xFF for c in codes) + bytes(pad)


def valid(values=(1, 2)):
    """Bytes of a valid all-int segment."""
    n = len(values)
    return layout([8 * k for k in range(n + 1)], b"".join(Q.pack(v) for v in values),
                  [b"q"] * n, [0] * n)


def every_read(sl):
    """Run every read API; return the exceptions raised."""
    errors = []
    ops = [len, list, lambda s: s.tolist(), lambda s: s.format, repr,
           lambda s: s.count(1), lambda s: s.count("a"), lambda s: s.count(None),
           lambda s: 2.0 in s, lambda s: s.index(b"x")]
    ops += [lambda s, k=k: s[k] for k in range(min(len(sl), 4))]
    ops += [lambda s, k=k: s._get_packing_format(k) for k in range(min(len(sl), 4))]
    for op in ops:
        try:
            op(sl)
        except (ValueError, IndexError) as exc:
            errors.append(exc)
    return errors


@pytest.mark.parametrize("data, message", [
    (b"\0" * 8, "too small"),
    (struct.pack("qq", -1, 0), "item count -1"),
    (struct.pack("qq", 2**62, 0), "item count"),
    (struct.pack("qqq", 3, 0, 0), "item count 3"),
    (struct.pack("qqqq", 1, 0, -8, 0) + bytes(9), "data area"),
    (struct.pack("qqq", 1, 0, 10**6) + bytes(17), "data area"),
    (valid()[:-1], "data area"),                      # truncated tail
])
def test_bad_headers_fail_at_attach(raw_segment, data, message):
    name = raw_segment(data)
    with pytest.raises(ValueError, match=message):
        ShareableList(name=name)


@pytest.mark.parametrize("offsets, formats, codes, message", [
    ([0, 24, 16], [b"q", b"q"], [0, 0], "offsets"),           # slot 0 past slot 1
    ([0, -8, 16], [b"q", b"q"], [0, 0], "offsets"),           # negative offset
    ([0, 2**62, 16], [b"q", b"q"], [0, 0], "offsets"),        # far outside
    ([0, 4, 16], [b"q", b"q"], [0, 0], "cannot hold a number"),
    ([0, 8, 16], [b"zz", b"q"], [0, 0], "unknown format"),
    ([0, 8, 16], [b"q\0q", b"q"], [0, 0], "unknown format"),
    ([0, 8, 16], [b"99s", b"q"], [0, 0], "wider than"),
    ([0, 8, 16], [b"q", b"q"], [7, 0], "code 7"),
    ([0, 8, 16], [b"q", b"q"], [1, 0], "code 1"),
    ([0, 8, 16], [b"d", b"q"], [-1, 0], "code 255"),
])
def test_bad_slots_fail_at_access(raw_segment, offsets, formats, codes, message):
    name = raw_segment(layout(offsets, bytes(16), formats, codes))
    sl = ShareableList(name=name)
    try:
        with pytest.raises(ValueError, match=message):
            sl[0]
        with pytest.raises(ValueError, match=message):
            sl[0] = 5
        with pytest.raises(ValueError, match=message):
            sl[0] = "s"
        with pytest.raises(ValueError, match=message):
            list(sl)
        with pytest.raises(ValueError, match=message):
            sl.count(object())          # compared item by item
        # count/index/in check a run of same-type numbers by its two end
        # offsets (documented): they may answer, or raise, never crash.
        for scan in (lambda: sl.count(0), lambda: sl.index(0), lambda: "x" in sl):
            try:
                scan()
            except ValueError as exc:
                assert message in str(exc) or str(exc).endswith(INDEX_MISSES)
    finally:
        sl.close()


def test_scan_checks_the_offsets_bounding_each_run(raw_segment):
    n = 600
    offsets = [8 * k for k in range(n + 1)]
    offsets[256] = 2**40                 # the end of the first run of 256
    name = raw_segment(layout(offsets, bytes(8 * n), [b"q"] * n, [0] * n))
    sl = ShareableList(name=name)
    try:
        assert sl[0] == 0 and sl[257] == 0
        for scan in (lambda: sl.count(1), lambda: sl.index(1), lambda: 1 in sl):
            with pytest.raises(ValueError, match="corrupt at item 255"):
                scan()
        assert sl.index(0) == 0          # found before the corrupt slot
    finally:
        sl.close()


@pytest.mark.parametrize("bad", [-2**63, 2**63 - 1, -8, 7])
def test_view_rejects_corrupt_offsets_inside_a_run(raw_segment, bad):
    offsets = [0, 8, bad, 24]
    name = raw_segment(layout(offsets, bytes(24), [b"q"] * 3, [0] * 3))
    sl = ShareableList(name=name)
    try:
        with pytest.raises((TypeError, ValueError), match="item 1"):
            sl.view()
        assert sl.view(0, 1).tolist() == [0]
    finally:
        sl.close()


def test_corrupt_slot_does_not_spoil_its_neighbours(raw_segment):
    name = raw_segment(layout([0, 8, 16, 24], b"".join(Q.pack(v) for v in (1, 2, 3)),
                              [b"q", b"??", b"q"], [0, 0, 0]))
    sl = ShareableList(name=name)
    try:
        assert sl[0] == 1 and sl[2] == 3
        with pytest.raises(ValueError):
            sl[1]
        sl[2] = 30
        assert sl[2] == 30
    finally:
        sl.close()


def test_formats_other_writers_use_are_read(raw_segment):
    # An exact-length "5s" in an 8-byte slot (python/cpython#145266), a bare
    # "s", an int read under the None format with code 0 (what struct yields).
    data = b"hello\0\0\0" + b"A" + bytes(7) + bytes(6) + b"\1" + bytes(1)
    name = raw_segment(layout([0, 8, 16, 24], data, [b"5s", b"s", b"xxxxxx?x"], [1, 2, 0]))
    sl = ShareableList(name=name)
    try:
        assert sl.tolist() == ["hello", b"A", True]
        sl[0] = "bye"
        assert sl[0] == "bye" and sl._get_packing_format(0) == "5s"
        sl[0] = "eightchr"                  # wider than 5s: the slot's full width
        assert sl[0] == "eightchr" and sl._get_packing_format(0) == "8s"
        assert sl.count("eightchr") == 1
    finally:
        sl.close()


def test_invalid_utf8_raises_unicode_error(raw_segment):
    name = raw_segment(layout([0, 8], b"\xff\xfe" + bytes(6), [b"8s"], [1]))
    sl = ShareableList(name=name)
    try:
        with pytest.raises(UnicodeDecodeError):
            sl[0]
        assert sl.count("x") == 0
    finally:
        sl.close()


def test_misaligned_slots_are_read_bytewise(raw_segment):
    data = bytes(3) + Q.pack(-5)
    name = raw_segment(layout([3, 11], data, [b"q"], [0]))
    sl = ShareableList(name=name)
    try:
        assert sl[0] == -5 and sl.count(-5) == 1
        sl[0] = 6
        assert sl[0] == 6
    finally:
        sl.close()


CASES = int(os.environ.get("PYSHL_FUZZ_CASES", "5000"))


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_segments_never_crash(seed):
    # 2 x 5,000 random and mutated segments through every read API, view()
    # and the atomics, in a subprocess so that a crash is a failure rather
    # than the end of the run.
    proc = subprocess.run([sys.executable, str(HERE / "hostile_ops.py"), str(seed), str(CASES)],
                          **CAPTURE, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok %d" % CASES


def test_corrupted_segment_reads_in_a_child_process(raw_segment):
    name = raw_segment(layout([0, 2**40, 16], bytes(16), [b"q", b"q"], [0, 0]))
    proc = run_python(f"""
        from pyshl import ShareableList
        sl = ShareableList(name={name!r})
        try:
            sl[0]
        except ValueError as exc:
            print(exc)
        sl.close()
    """)
    assert "corrupt at item 0" in proc.stdout


def test_a_run_whose_end_offsets_wrap_is_not_trusted():
    # A scan checks items 0..255 as one run by off[0] and off[256]: with
    # off[0] = 2**63 - 8*256 and off[256] = -2**63 their signed difference
    # wraps to exactly 8*256.  A scan that trusted it would read 2**63 bytes away.
    m = 300
    offsets = [8 * k for k in range(m + 1)]
    offsets[0], offsets[256] = 2**63 - 8 * 256, -2**63
    code = """
        import struct
        from pyshl import ShareableList, SharedMemory
        data = %r
        shm = SharedMemory(create=True, size=len(data))
        shm.buf[:] = data
        sl = ShareableList(name=shm.name)
        for scan in (lambda: sl.count(0), lambda: sl.index(0), lambda: 0 in sl):
            try:
                scan()
            except ValueError as exc:
                assert "corrupt" in str(exc) or str(exc).endswith(INDEX_MISSES)
        sl.close(); shm.close(); shm.unlink()
    """ % layout(offsets, bytes(8 * m), [b"q"] * m, [0] * m)
    run_python(code)


def test_a_number_never_goes_into_a_text_slot_smaller_than_8_bytes(raw_segment):
    # Another writer may make "1s" slots of 1 byte: a number does not fit.
    name = raw_segment(layout([0, 1, 9], b"a" + bytes(8), [b"1s", b"q"], [1, 0]))
    sl = ShareableList(name=name)
    try:
        before = bytes(sl.shm.buf)
        for value in (5, 2.5, True, None):
            with pytest.raises(ValueError, match="cannot hold a number"):
                sl[0] = value
            with pytest.raises(ValueError, match="cannot hold a number"):
                sl[0:1] = [value]
        assert bytes(sl.shm.buf) == before and sl.tolist() == ["a", 0]
        sl[0] = "b"
        assert sl[0] == "b"
    finally:
        sl.close()
