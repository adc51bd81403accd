"""Shared NumPy arrays by name: segments that are the image of a .npy file.

A segment made by ``pyshl.empty``/``zeros``/``full``/``array`` holds exactly
what ``np.save`` would write to a file -- the magic string, a header naming
the dtype and shape, padding to 64 bytes, then the data in C order -- so
``np.load("/dev/shm/NAME", mmap_mode="r")`` reads it without pyshl, and
``pyshl.attach(NAME)`` needs nothing but the name.  Attaching treats the header
as untrusted input: it is copied out, parsed without evaluating code, and
checked against the segment's size before any array is made.
"""

import operator
import os
import struct

import numpy as np

from pyshl._npy import ALIGN, MAGIC, read_header, refusal
from pyshl._shm import SharedMemory
from pyshl._views import SharedArray

__all__ = ["array", "attach", "empty", "full", "zeros"]



def _header_bytes(dtype, shape):
    """The .npy prefix for an array: magic, version, header length, header
    padded with spaces and a newline to a multiple of 64 bytes.  Version 1.0
    unless the header needs 2.0 (over 64 KiB) or 3.0 (non-Latin-1 names)."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
        np.lib.format.dtype_to_descr(dtype), tuple(shape))
    try:
        encoded = text.encode("latin1")
        versions = (1, 2)
    except UnicodeEncodeError:
        encoded = text.encode("utf8")
        versions = (3,)
    for version in versions:
        length_bytes = 2 if version == 1 else 4
        prefix = len(MAGIC) + 2 + length_bytes
        total = -(-(prefix + len(encoded) + 1) // ALIGN) * ALIGN
        header_length = total - prefix
        if length_bytes == 2 and header_length > 0xFFFF:
            continue
        header = encoded + b" " * (header_length - len(encoded) - 1) + b"\n"
        return (MAGIC + bytes([version, 0]) +
                struct.pack("<H" if length_bytes == 2 else "<I", header_length) + header)
    raise AssertionError("unreachable")


def _check_dtype(dtype, what="a shared array"):
    if dtype.hasobject:
        raise TypeError("%s cannot hold Python objects (dtype %s): its memory is shared "
                        "with other processes" % (what, dtype))
    if dtype.itemsize == 0 and dtype.kind in "SUV":
        raise TypeError("%s needs a fixed-size dtype, not %s" % (what, dtype))


def _shape_arg(shape):
    try:
        shape = (operator.index(shape),)
    except TypeError:
        try:
            shape = tuple(operator.index(n) for n in shape)
        except TypeError:
            raise TypeError("shape must be an int or a sequence of ints, not %r"
                            % (shape,)) from None
    if any(n < 0 for n in shape):
        raise ValueError("negative dimensions are not allowed")
    return shape


def _create(shape, dtype, name, track, fill):
    """A new segment holding one array of this shape and dtype; `fill(array)`
    writes its contents.  A failure leaves no segment behind."""
    dtype = np.dtype(dtype)
    _check_dtype(dtype)
    if dtype.subdtype is not None:     # "(2,)f8": NumPy makes it two more float64 per element
        shape = tuple(shape) + dtype.shape
        dtype = dtype.base
    header = _header_bytes(dtype, shape)
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    shm = SharedMemory(name, create=True, size=len(header) + nbytes, track=track)
    try:
        mapping = shm._mmap
        export = mapping.export()
        memoryview(export)[:len(header)] = header
        array = np.ndarray(shape, dtype, buffer=export, offset=len(header)).view(SharedArray)
        if fill is not None:
            fill(array)
    except BaseException:
        shm.close()
        shm.unlink()
        raise
    shm.close()         # the array holds the mapping
    array._creator = (shm, os.getpid())
    return array


def empty(shape, dtype=float, *, name=None, track=None):
    """A new shared array of this shape and dtype (its contents are zeros, as
    a new segment's are), in a segment of its own: ``numpy.empty`` for
    memory that other processes attach by name.

    ``name`` names the segment (a random ``psm_...`` name if None); ``track``
    registers it with the resource tracker, which unlinks it when this
    process exits (default: yes, as for a new ShareableList).  Any
    fixed-size dtype without Python objects; any shape, 0-d and empty
    included; C order.  Returns a SharedArray.
    """
    return _create(_shape_arg(shape), dtype, name, track, None)


def zeros(shape, dtype=float, *, name=None, track=None):
    """A new shared array of zeros: ``numpy.zeros`` in a named segment (see empty)."""
    return _create(_shape_arg(shape), dtype, name, track, None)


def full(shape, fill_value, dtype=None, *, name=None, track=None):
    """A new shared array filled with ``fill_value``: ``numpy.full`` in a
    named segment (see empty)."""
    shape = _shape_arg(shape)
    if dtype is None:
        dtype = np.array(fill_value).dtype
    value = np.array(fill_value, dtype=dtype)     # converted before the segment exists

    def fill(array):
        np.copyto(array, value, casting="unsafe")
    return _create(shape, dtype, name, track, fill)


def array(obj, dtype=None, *, name=None, track=None):
    """A copy of any array-like in a new named segment: ``numpy.array`` for
    shared memory (see empty).  The copy is C-ordered."""
    source = np.asarray(obj, dtype=dtype)         # converted before the segment exists
    _check_dtype(source.dtype)

    def fill(array):
        np.copyto(array, source, casting="no")
    return _create(source.shape, source.dtype, name, track, fill)


def _parse_header(memory, size, written, name):
    """(dtype, shape, fortran_order, data offset) from the .npy header at the
    start of `memory` (see _npy.read_header): a dtype NumPy reads, with no
    Python objects, and data that fits the segment's written pages."""
    descr, shape, fortran_order, end = read_header(memory, size, written, name)
    try:
        dtype = np.lib.format.descr_to_dtype(descr)
    except Exception as exc:     # NumPy raises many kinds for a bad descr
        raise refusal(name, "the dtype %.100r is not one NumPy reads (%s)"
                      % (descr, type(exc).__name__)) from None
    if dtype.hasobject:
        raise refusal(name, "its dtype %s holds Python objects, which cannot be shared" % dtype)
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    if end + nbytes > size:
        raise refusal(name, "%s of %s takes %d bytes from offset %d, but the segment has %d"
                      % (shape, dtype, nbytes, end, size))
    if end + nbytes > written:
        raise refusal(name, "its data is on pages that were never written (a sparse file)")
    return dtype, shape, fortran_order, end


def attach(name, *, readonly=False):
    """The shared array in segment ``name``, as a SharedArray over the same
    memory: O(1), whatever its size.  The dtype and shape come from the
    segment's header (see pyshl.empty); a segment that does not hold a valid
    one raises ValueError.  ``readonly=True`` maps it read-only.  Attaching
    never registers the segment with the resource tracker, so this process
    never unlinks it unless asked to (``a.unlink()``)."""
    segment = SharedMemory(name, track=False, readonly=bool(readonly))
    try:
        mapping = segment._mmap
        export = mapping.export()
        dtype, shape, fortran_order, offset = _parse_header(
            memoryview(export), len(mapping), mapping.first_hole, name)
        array = np.ndarray(shape, dtype, buffer=export, offset=offset,
                           order="F" if fortran_order else "C")
    finally:
        segment.close()            # the array holds the mapping
    return array.view(SharedArray)

