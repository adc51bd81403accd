"""Shared arrays by name: creation, the .npy image, attach, hostile headers, lifetimes."""
import os
import struct

import numpy as np
import pytest

import pyshl
from helpers import SHM_DIR, run_python, segment_exists

DTYPES = [
    "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16", "?",
    "M8[ns]", "m8[s]", "S5", "U3", ">i4", "V6",
    [("x", "<f4"), ("y", "u1"), ("tag", "S3")],
    [("pos", "f8", (3,)), ("id", "i8")],
]
SHAPES = [(), (0,), (7,), (3, 4), (2, 0, 5), (2, 3, 4)]


def _sample(shape, dtype):
    dtype = np.dtype(dtype)
    raw = np.arange(int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8) * 7 + 3
    return raw.view(dtype).reshape(shape) if dtype.itemsize else np.zeros(shape, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_segment_is_an_npy_image_numpy_loads(shared, dtype, shape):
    source = _sample(shape, dtype)
    a = shared(pyshl.array, source)
    assert isinstance(a, pyshl.SharedArray) and a.flags.c_contiguous
    assert a.dtype == source.dtype and a.shape == source.shape
    assert a.tobytes() == source.tobytes()
    path = os.path.join(SHM_DIR, a.name)
    size = os.path.getsize(path)
    loaded = np.load(path, mmap_mode="r") if size > 128 else np.load(path)
    assert loaded.dtype == source.dtype and loaded.shape == source.shape
    assert loaded.tobytes() == source.tobytes()
    with open(path, "rb") as f:
        image = f.read()
    assert image[:8] == b"\x93NUMPY\x01\x00"
    header_length = struct.unpack("<H", image[8:10])[0]
    assert (10 + header_length) % 64 == 0 and size == 10 + header_length + source.nbytes
    attached = pyshl.attach(a.name)
    assert attached.dtype == source.dtype and attached.shape == source.shape
    assert attached.tobytes() == source.tobytes()


def test_a_file_numpy_saved_attaches_byte_for_byte(tmp_path):
    source = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.save(str(tmp_path / "x.npy"), source)
    with open(str(tmp_path / "x.npy"), "rb") as f:
        image = f.read()
    shm = pyshl.SharedMemory(create=True, size=len(image))
    try:
        shm.buf[:len(image)] = image
        a = pyshl.attach(shm.name)
        assert a.tolist() == source.tolist()
    finally:
        shm.close()
        shm.unlink()


def test_fortran_order_written_by_another_tool_is_read_as_fortran(tmp_path):
    source = np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4))
    np.save(str(tmp_path / "f.npy"), source)
    image = (tmp_path / "f.npy").read_bytes()
    assert b"'fortran_order': True" in image
    shm = pyshl.SharedMemory(create=True, size=len(image))
    try:
        shm.buf[:len(image)] = image
        a = pyshl.attach(shm.name)
        assert a.tolist() == source.tolist() and a.flags.f_contiguous
    finally:
        shm.close()
        shm.unlink()


def test_big_and_unicode_headers_take_versions_2_and_3(shared):
    wide = np.dtype([("f%d" % k, "f8") for k in range(5000)])
    a = shared(pyshl.zeros, 2, wide)
    with open(os.path.join(SHM_DIR, a.name), "rb") as f:
        assert f.read(8) == b"\x93NUMPY\x02\x00"
    try:
        loaded = np.load(os.path.join(SHM_DIR, a.name), max_header_size=1 << 20)
    except TypeError:            # NumPy < 1.24 reads any header size
        loaded = np.load(os.path.join(SHM_DIR, a.name))
    assert loaded.dtype == wide
    assert pyshl.attach(a.name).dtype == wide
    named = np.dtype([("\u00e9t\u00e9", "i4"), ("\u03c0", "f8")])
    b = shared(pyshl.zeros, 3, named)
    with open(os.path.join(SHM_DIR, b.name), "rb") as f:
        assert f.read(8) == b"\x93NUMPY\x03\x00"
    assert pyshl.attach(b.name).dtype == named


def test_constructors_follow_numpy(shared):
    assert shared(pyshl.zeros, (2, 3)).dtype == np.float64
    assert shared(pyshl.empty, 4, np.int8).tolist() == [0, 0, 0, 0]
    assert shared(pyshl.zeros, 3, "u2").tolist() == [0, 0, 0]
    f = shared(pyshl.full, (2, 2), 7)
    assert f.dtype == np.array(7).dtype and f.tolist() == [[7, 7], [7, 7]]
    assert shared(pyshl.full, 3, 1.5, np.float32).tolist() == [1.5] * 3
    assert shared(pyshl.full, 2, b"ab").tolist() == [b"ab", b"ab"]
    g = shared(pyshl.array, [[1, 2], [3, 4]], np.int32)
    assert g.dtype == np.int32 and g.tolist() == [[1, 2], [3, 4]]
    h = shared(pyshl.array, np.arange(10)[::-2])
    assert h.flags.c_contiguous and h.tolist() == [9, 7, 5, 3, 1]
    named = shared(pyshl.zeros, 5, name="psm_test_named_array")
    assert named.name == "psm_test_named_array"


@pytest.mark.parametrize("call, error", [
    (lambda name: pyshl.zeros(3, object, name=name), TypeError),
    (lambda name: pyshl.array([1, "a", None], name=name), TypeError),
    (lambda name: pyshl.zeros((2, -1), name=name), ValueError),
    (lambda name: pyshl.zeros("abc", name=name), TypeError),
    (lambda name: pyshl.zeros(3, "S", name=name), TypeError),
    (lambda name: pyshl.full(3, "not a number", np.int32, name=name), ValueError),
    (lambda name: pyshl.zeros(3, np.dtype([("o", object)]), name=name), TypeError),
])
def test_bad_arguments_raise_and_leave_no_segment(call, error):
    # (a fixed name: other processes may make and drop psm_* segments meanwhile)
    name = "psm_test_bad_arguments_%d" % os.getpid()
    with pytest.raises(error):
        call(name)
    assert not segment_exists(name)
    with pytest.raises(ValueError):
        pyshl.zeros(3, name="bad/name")


def test_a_name_in_use_raises_and_leaves_the_segment(shared):
    a = shared(pyshl.zeros, 3, name="psm_test_taken")
    with pytest.raises(FileExistsError):
        pyshl.zeros(5, name="psm_test_taken")
    assert pyshl.attach("psm_test_taken").shape == (3,) and a.shape == (3,)


def test_attach_is_the_same_memory_and_readonly_is_enforced(shared):
    a = shared(pyshl.zeros, (4, 4), np.int32)
    b = pyshl.attach(a.name)
    b[1, 2] = 7
    assert a[1, 2] == 7
    ro = pyshl.attach(a.name, readonly=True)
    assert not ro.flags.writeable
    with pytest.raises(ValueError):
        ro[0, 0] = 1
    with pytest.raises(ValueError):
        ro.flags.writeable = True
    with pytest.raises(ValueError, match="read-only"):
        pyshl.add_at(ro, [0], 1)


def test_name_unlink_and_with(shared):
    a = pyshl.zeros(3)
    name = a.name
    assert segment_exists(name) and a[1:].name == name
    a.unlink()
    assert not segment_exists(name)
    a[0] = 5                       # the memory lives while a mapping does
    assert a[0] == 5
    with pytest.raises(FileNotFoundError):
        a.unlink()
    assert np.ones(3).view(pyshl.SharedArray).name is None
    with pyshl.zeros(4) as b:
        name = b.name
        window = b[1:3]
    assert not segment_exists(name)
    window[:] = 1                  # still mapped
    assert b.tolist() == [0, 1, 1, 0]


def test_an_attached_handle_leaves_the_segment_on_with_exit(shared):
    a = shared(pyshl.zeros, 3)
    with pyshl.attach(a.name):
        pass
    assert segment_exists(a.name)


def test_unlink_of_an_attached_array_refuses_a_replaced_segment():
    a = pyshl.zeros(3, name="psm_test_replaced")
    attached = pyshl.attach("psm_test_replaced")
    a.unlink()
    b = pyshl.zeros(3, name="psm_test_replaced")
    try:
        with pytest.raises(FileNotFoundError):
            attached.unlink()         # the name is another segment's now
        assert segment_exists("psm_test_replaced")
    finally:
        b.unlink()


def test_attaching_process_never_unlinks_and_creator_untracked_by_choice(shared):
    a = shared(pyshl.zeros, 3, np.int64)
    proc = run_python("""
        import pyshl
        b = pyshl.attach(%r)
        b[1] = 41
        pyshl.fetch_add(b, 1, 1)
    """ % a.name)
    assert a[1] == 42 and segment_exists(a.name)
    assert "leaked" not in proc.stderr
    proc = run_python("""
        import pyshl
        a = pyshl.zeros(3, name="psm_test_untracked", track=False)
    """)
    try:
        assert segment_exists("psm_test_untracked")
    finally:
        pyshl.SharedMemory("psm_test_untracked", track=False).unlink()
    proc = run_python("""
        import pyshl
        a = pyshl.zeros(3, name="psm_test_tracked")
    """)
    assert not segment_exists("psm_test_tracked")     # its creator's tracker unlinked it


def test_a_forked_child_leaving_with_keeps_the_parents_segment():
    with pyshl.zeros(3) as a:
        pid = os.fork()
        if pid == 0:
            try:
                with a:
                    pass
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert segment_exists(a.name)


def test_attach_is_o1_and_never_reads_the_data(shared):
    # A 1 GiB array: attach reads the header page only (a sparse data area
    # would be refused; this one was reserved when it was made).
    a = shared(pyshl.empty, 1 << 27, np.int64)
    b = pyshl.attach(a.name)
    assert b.shape == (1 << 27,)
    del b


# -- hostile headers -----------------------------------------------------------

def _image(header, data=b"", version=1):
    length = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header + data


HOSTILE = [
    (b"", "no .npy header"),
    (b"\x93NUMPX\x01\x00", "no .npy header"),
    (b"\x93NUMPY\x09\x00\x10\x00", "version"),
    (b"\x93NUMPY\x01\x00\xff\xff{", "past the end"),
    (b"\x93NUMPY\x02\x00\xff\xff\xff\x7f", "limit"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': (10,), }\n"), "takes 80 bytes"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': (-1,), }\n"), "from 0 to"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': (2**70,), }\n"), "not a Python"),
    (_image(b"{'descr': 'O', 'fortran_order': False, 'shape': (1,), }\n", bytes(8)), "objects"),
    (_image(b"{'descr': [('a', 'O')], 'fortran_order': False, 'shape': (1,), }\n", bytes(8)),
     "objects"),
    (_image(b"{'descr': 'zz', 'fortran_order': False, 'shape': (1,), }\n"), "NumPy reads"),
    (_image(b"{'descr': '<i8', 'fortran_order': 1, 'shape': (1,), }\n", bytes(8)),
     "fortran_order"),
    (_image(b"{'descr': '<i8', 'shape': (1,), }\n", bytes(8)), "a dict"),
    (_image(b"__import__('os').system('echo pwned')\n"), "not a Python literal"),
    (_image(b"{'descr': " + b"[" * 100000 + b"]" * 100000 + b"}", version=2), "nests"),
    (_image(b"{'descr': '<S9999999999999', 'fortran_order': False, 'shape': (1,), }\n"),
     "NumPy reads|takes"),
    (_image(b"{'descr': ('<i8', (99999999999,)), 'fortran_order': False, 'shape': (1,), }\n"),
     "NumPy reads|takes"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': (1,) * 65, }\n"), "literal"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': " + b"(1," * 30 + b")" * 30
            + b", }\n"), "not a tuple"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }\xff\n", bytes(8),
            version=3), "UTF-8"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': (" + b"9" * 100000 + b",), }",
            version=2), "40 characters"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': (0x" + b"f" * 4000 + b",), }"),
     "40 characters"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': (0, 99999999999999999999), }"),
     "from 0 to"),
    (_image(b"{'descr': '<i8', 'fortran_order': False, 'shape': (5), }\n"), "not a tuple"),
    (_image("{'descr': '<i8', 'fortran_order': False, 'shape': (\u0665,), }\n".encode(),
            version=3), "not a Python literal|not a tuple"),
]


@pytest.mark.parametrize("data, message", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_headers_raise_value_error(raw_segment, data, message):
    name = raw_segment(data)
    with pytest.raises(ValueError, match=message):
        pyshl.attach(name)


def test_a_list_segment_is_not_an_array(make):
    sl = make([1, 2, 3])
    with pytest.raises(ValueError, match="no .npy header"):
        pyshl.attach(sl.shm.name)


def test_a_sparse_array_segment_is_refused():
    a = pyshl.zeros(1000)
    try:
        path = os.path.join(SHM_DIR, a.name)
        offset = 128
        assert os.path.getsize(path) == offset + 8000
        with open(path, "r+b") as f:  # the data's second page becomes a hole
            f.truncate(offset)
            f.truncate(offset + 8000)
        with pytest.raises(ValueError, match="never written"):
            pyshl.attach(a.name)
    finally:
        a.unlink()
