"""Arrays that travel: a window onto a pyshl segment pickles as a reference to it.

A NumPy array pickles by value, so handing ``sl.view()`` to a worker process
would give it a private copy and lose its writes.  ``view()`` (and
``__array__``) return a SharedArray instead: it pickles as the segment's name,
the byte offset, dtype, shape and strides, and unpickles in any process as a
zero-copy window onto the same slots.  It also carries what identifies the
segment (device, inode, size) and, for a window onto a list's slots, which
slots and of what kind: unpickled after a new segment took the name, or after
its slots changed kind, it raises instead of writing into whatever is there
now.  Like ``np.memmap``'s, only windows onto
the segment travel this way; results of arithmetic, reductions and copies are
ordinary arrays that pickle by value.

Plain ``numpy.ndarray`` windows (``np.asarray(sl)`` is one: NumPy drops the
subclass; so is an array over ``pyshl.SharedMemory(...).buf``) travel by
reference through multiprocessing too, which pickles with ``ForkingPickler``:
this module registers a reducer for ndarray there, which leaves every array
that is not a window onto a pyshl segment to NumPy.  ``import pyshl`` imports
this module at once if NumPy is imported, else the moment NumPy is
(pyshl._numpy_hook), so that whether an array travels by reference never
depends on what ran before.
"""

import errno
import os
import pickle
import struct
import sys
from multiprocessing.reduction import ForkingPickler

import numpy as np

from pyshl._codec import ShareableList, _learn_numpy
from pyshl._mapping import Export
from pyshl._shm import SharedMemory, _segment_path, unlink_segment

__all__ = ["SharedArray"]


def _export_of(array):
    """(the Export `array`'s memory belongs to, its byte offset there), or
    None if its memory is not a named pyshl segment's."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if not isinstance(base, Export) or base.mapping.name is None:
        return None
    return base, array.__array_interface__["data"][0] - base.mapping.address


def _byte_range(array, offset):
    """The bytes [lo, hi) of its segment that `array` (at `offset`) spans."""
    if array.size == 0:
        return offset, offset
    lo = hi = offset
    for extent, stride in zip(array.shape, array.strides):
        if stride < 0:
            lo += stride * (extent - 1)
        else:
            hi += stride * (extent - 1)
    return lo, hi + array.itemsize


# The format entries of the slots view() gives arrays of: int, float, bool.
_NUMBER_FORMATS = (b"q", b"d", b"xxxxxxx?")


def _list_slots(export, lo, hi):
    """(a, b, format, start) if bytes [lo, hi) of the segment lie in the
    contiguous 8-byte slots of items a..b-1 of the ShareableList it holds,
    which start at byte `start` and are number slots of one packing format;
    None if they lie elsewhere.  Raises ValueError if those slots no longer
    hold numbers of one kind: the window was made onto slots that changed.

    Reads O(log n) header entries, and only where the segment was written
    (reading a never-written page of tmpfs allocates it).  Unpickling checks
    the whole range, as view() does.
    """
    mapping = export.mapping
    memory = memoryview(export)
    size, written = len(mapping), mapping.first_hole

    def entry(at, code="q"):
        if at + 8 > written:
            raise LookupError(at)
        return struct.unpack_from(code, memory, at)[0]

    try:
        n = entry(0)
        if n <= 0 or n > (size - 16) // 17:
            return None
        data = 8 * (n + 2)
        data_size = entry(data - 8)
        if data_size < 0 or data_size > size - 16 - 17 * n:
            return None
        if lo >= hi or lo < data or hi > data + data_size:
            return None

        def item_at(byte):
            # The last item whose slot starts at or before `byte` (offsets
            # rise with the index in a list's header).
            first, last = 0, n - 1
            while first < last:
                middle = (first + last + 1) // 2
                if entry(8 + 8 * middle) <= byte:
                    first = middle
                else:
                    last = middle - 1
            return first

        a, b = item_at(lo - data), item_at(hi - 1 - data) + 1
        start = entry(8 + 8 * a)
        # Every slot takes 8 bytes or more: these are b - a slots of 8.
        if entry(8 + 8 * b) - start != 8 * (b - a):
            return None
        formats = data + data_size
        packing = entry(formats + 8 * a, "8s").rstrip(b"\0")
        last = entry(formats + 8 * (b - 1), "8s").rstrip(b"\0")
    except LookupError:
        return None
    if packing not in _NUMBER_FORMATS or last != packing:
        raise ValueError("items %d..%d of the ShareableList in shared memory segment %r, "
                         "which this window is onto, are no longer numbers of one kind "
                         "(item %d is packed as %r, item %d as %r)"
                         % (a, b - 1, mapping.name, a, packing.decode(errors="replace"),
                            b - 1, last.decode(errors="replace")))
    return a, b, packing.decode(), data + start


def _segment_window(array):
    """The arguments of _attach_window() that rebuild `array` as a window onto
    the same segment in any process, or None if its memory is not a pyshl
    segment's."""
    found = _export_of(array)
    if found is None:
        return None
    export, offset = found
    mapping = export.mapping
    return (mapping.name, mapping.identity, len(mapping), offset, array.dtype,
            array.shape, array.strides, mapping.readonly, bool(array.flags.writeable),
            _list_slots(export, *_byte_range(array, offset)))


def _check_same_segment(mapping, name, identity, size):
    """Raise unless `mapping` is of the segment a window was made onto."""
    if mapping.identity != identity:
        raise ValueError("shared memory segment %r was replaced since this window was "
                         "made (a new segment has its name)" % name)
    if len(mapping) != size:
        raise ValueError("shared memory segment %r was resized since this window was "
                         "made (%d bytes, not %d)" % (name, len(mapping), size))


def _check_list_slots(name, identity, size, slots, readonly):
    """Attach the list a window was made onto and check that items a..b-1 are
    still number slots of the packing format they had, where they were: the
    check view() makes.  Returns the list, whose mapping the window is made on."""
    a, b, packing, start = slots
    try:
        holder = ShareableList(name=name, readonly=readonly)
    except ValueError as exc:
        raise ValueError("shared memory segment %r no longer holds the ShareableList "
                         "this window was made onto: %s" % (name, exc)) from None
    try:
        mapping = holder.shm._mmap
        _check_same_segment(mapping, name, identity, size)   # not replaced meanwhile
        try:
            if len(holder) < b:
                raise ValueError("the list has %d items" % len(holder))
            found = holder.view(a, b)      # raises unless contiguous number slots of one kind
            if holder._get_packing_format(a) != packing:
                raise ValueError("they are %r" % holder._get_packing_format(a))
            at = found.__array_interface__["data"][0] - mapping.address
            if at - (7 if packing == "xxxxxxx?" else 0) != start:   # a bool's flag byte
                raise ValueError("their slots moved")
        except (TypeError, ValueError) as exc:
            raise ValueError("items %d..%d of the ShareableList in shared memory segment "
                             "%r are no longer the %r slots this window was made onto: %s"
                             % (a, b - 1, name, packing, exc)) from None
    except BaseException:
        holder.close()
        raise
    return holder


def _attach_window(name, identity, size, offset, dtype, shape, strides, readonly,
                   writeable, slots):
    """Unpickle a window: attach (never tracked, so never unlinked), check that
    the segment is the one it was made onto (and, for a window onto a list's
    slots, that they still are), and map."""
    segment = SharedMemory(name, track=False, readonly=readonly)
    try:
        _check_same_segment(segment._mmap, name, identity, size)
        if slots is not None:   # mapped anew by the list that was checked
            segment.close()
            segment = _check_list_slots(name, identity, size, slots, readonly)
            mapping = segment.shm._mmap
        else:
            mapping = segment._mmap
        array = np.ndarray(shape, dtype, buffer=mapping.export(), offset=offset,
                           strides=strides)
        if _byte_range(array, offset)[1] > mapping.first_hole:
            # (a list's slots were checked written when it attached)
            raise ValueError("shared memory segment %r has unwritten pages from offset %d, "
                             "where this window is (a sparse file): refusing to map it"
                             % (name, mapping.first_hole))
    finally:
        segment.close()          # the array holds the mapping; the handle can go
    if not writeable:
        array.flags.writeable = False
    return array.view(SharedArray)


class SharedArray(np.ndarray):
    """A NumPy array over a pyshl segment that pickles as a reference to it.

    ``sl.view()`` makes one over a list's slots; ``pyshl.empty``, ``zeros``,
    ``full``, ``array`` and ``attach`` make one over a segment of its own
    (``name``, ``unlink()``, and ``with``, which unlinks a segment this handle
    created).  Pickled (for a worker process, a pool, joblib,
    dask), it carries the segment's name, byte offset, dtype, shape and
    strides -- a few hundred bytes whatever its size -- and unpickles as a
    window onto the same slots, so writes there are seen by every process.
    Slices keep this; arithmetic, reductions and ``copy()`` give ordinary
    arrays, which pickle by value.  Unpickling after the segment was unlinked
    raises FileNotFoundError, after it was replaced (a new segment under its
    name) or its slots changed kind ValueError; unpickling never registers the
    segment with the resource tracker, so a worker never unlinks it.

    Its constructor is ``np.ndarray``'s, which makes a private array: make
    shared ones with the functions above.
    """

    def __reduce__(self):
        window = _segment_window(self)
        if window is None:       # memory of its own (a copy): by value, as a plain array
            return self.view(np.ndarray).__reduce__()
        return _attach_window, window

    def __reduce_ex__(self, protocol):
        return self.__reduce__()

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # Results that are windows onto the segment (ufuncs with out=) stay
        # SharedArrays; new results are ordinary arrays, as np.memmap's are.
        if array is self or _export_of(array) is not None:
            return array
        array = array.view(np.ndarray)
        # A 0-d result is a reduction's: a scalar (NumPy 1.x says so by shape).
        return array[()] if return_scalar or array.ndim == 0 else array

    def copy(self, order="C"):
        """A copy in private memory: an ordinary array."""
        return self.view(np.ndarray).copy(order)

    @property
    def name(self):
        """The name of the shared memory segment this array is in (None for
        an array in private memory)."""
        found = _export_of(self)
        return None if found is None else found[0].mapping.name

    def unlink(self):
        """Remove the segment's name, as ``SharedMemory.unlink`` does: no new
        process can attach it; the memory lives while any mapping of it does.
        Raises FileNotFoundError if the name is gone, or names another
        segment now (which is left alone)."""
        found = _export_of(self)
        if found is None:
            raise ValueError("this array is not in a named shared memory segment")
        mapping = found[0].mapping
        creator = self.__dict__.get("_creator")
        try:
            status = os.stat(_segment_path(mapping.name))
            same = (status.st_dev, status.st_ino) == mapping.identity
        except FileNotFoundError:
            same = False
        if not same:
            if creator is not None:
                creator[0]._untrack(gone=True)    # its tracker must not unlink the new one
            raise FileNotFoundError(errno.ENOENT, "no shared memory segment of this name "
                                    "holds this array any more", mapping.name)
        if creator is not None:
            creator[0].unlink()        # also stops the resource tracker unlinking it
        else:
            unlink_segment(mapping.name)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """Unlink the segment if this handle created it (in this process:
        a forked child's copy of the handle leaves it alone)."""
        creator = self.__dict__.get("_creator")
        if creator is not None and creator[1] == os.getpid():
            try:
                self.unlink()
            except FileNotFoundError:
                pass
            self.__dict__.pop("_creator", None)

    def __array_finalize__(self, obj):
        if not _dask_taught and "distributed" in sys.modules:
            _teach_dask()


_dask_taught = False


def _teach_dask():
    """Have dask.distributed send SharedArrays by reference.

    dask serializes an ndarray subclass with its own ndarray serializer (by
    value) unless the subclass has one of its own.  This registers it, once,
    as soon as distributed is imported in a process that makes windows; a
    worker that receives one imports this module to unpickle its type, which
    registers it there before the frames are read.
    """
    global _dask_taught
    _dask_taught = True
    from distributed.protocol import dask_deserialize, dask_serialize

    @dask_serialize.register(SharedArray)
    def _serialize_window(array):
        return {}, [pickle.dumps(array)]

    @dask_deserialize.register(SharedArray)
    def _deserialize_window(header, frames):
        return pickle.loads(frames[0])


def _reduce_ndarray(array):
    """multiprocessing's reducer for plain ndarrays: windows onto a pyshl
    segment by reference, every other array as NumPy pickles it."""
    window = _segment_window(array)
    if window is None:
        return array.__reduce_ex__(pickle.DEFAULT_PROTOCOL)
    return _attach_window, window


ForkingPickler.register(np.ndarray, _reduce_ndarray)
_learn_numpy(np, SharedArray)
if "distributed" in sys.modules:
    _teach_dask()
