"""Arrays that travel: a window onto a pyshl segment pickles as a reference to it.

A NumPy array pickles by value, so handing ``sl.view()`` to a worker process
would give it a private copy and lose its writes.  ``view()`` (and
``__array__``) return a SharedArray instead: it pickles as the segment's name,
the byte offset, dtype, shape and strides, and unpickles in any process as a
zero-copy window onto the same slots.  Like ``np.memmap``'s, only windows onto
the segment travel this way; results of arithmetic, reductions and copies are
ordinary arrays that pickle by value.

Plain ``numpy.ndarray`` windows (``np.asarray(sl)`` is one: NumPy drops the
subclass) travel by reference through multiprocessing too, which pickles with
``ForkingPickler``: pyshl registers a reducer for ndarray there, which leaves
every array that is not a window onto a pyshl segment to NumPy.
"""

import pickle
import sys
from multiprocessing.reduction import ForkingPickler

import numpy as np

from pyshl._mapping import Export, Mapping
from pyshl._shm import SharedMemory

__all__ = ["SharedArray"]


def _segment_window(array):
    """The arguments of _attach_window() that rebuild `array` as a window onto
    the same segment in any process, or None if its memory is not a pyshl
    segment's."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if isinstance(base, Export):
        base = base.mapping
    if not isinstance(base, Mapping) or base.name is None:
        return None
    return (base.name, array.__array_interface__["data"][0] - base.address,
            array.dtype.str, array.shape, array.strides, base.readonly,
            bool(array.flags.writeable))


def _attach_window(name, offset, dtype, shape, strides, readonly, writeable):
    """Unpickle a window: attach (never tracked, so never unlinked) and map."""
    segment = SharedMemory(name, track=False, readonly=readonly)
    try:
        array = np.ndarray(shape, dtype, buffer=segment._mmap.export(), offset=offset,
                           strides=strides)
    finally:
        segment.close()          # the array holds the mapping; the handle can go
    if not writeable:
        array.flags.writeable = False
    return array.view(SharedArray)


class SharedArray(np.ndarray):
    """A NumPy array over a pyshl segment that pickles as a reference to it.

    ``sl.view()`` makes one.  Pickled (for a worker process, a pool, joblib,
    dask), it carries the segment's name, byte offset, dtype, shape and
    strides -- a few hundred bytes whatever its size -- and unpickles as a
    window onto the same slots, so writes there are seen by every process.
    Slices keep this; arithmetic, reductions and ``copy()`` give ordinary
    arrays, which pickle by value.  Unpickling after the segment was unlinked
    raises FileNotFoundError; unpickling never registers the segment with the
    resource tracker, so a worker never unlinks it.
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
        if array is self or _segment_window(array) is not None:
            return array
        array = array.view(np.ndarray)
        # A 0-d result is a reduction's: a scalar (NumPy 1.x says so by shape).
        return array[()] if return_scalar or array.ndim == 0 else array

    def copy(self, order="C"):
        """A copy in private memory: an ordinary array."""
        return self.view(np.ndarray).copy(order)

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
if "distributed" in sys.modules:
    _teach_dask()
