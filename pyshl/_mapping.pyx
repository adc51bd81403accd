# cython: language_level=3, embedsignature=True, binding=False
"""The shared mapping of a whole segment, unmapped when its last holder goes."""

from cpython.buffer cimport PyBuffer_FillInfo
from cpython.exc cimport PyErr_SetFromErrno
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap


cdef class Mapping:
    """A shared mapping of a whole segment, unmapped when the last reference goes.

    ``Mapping(fd, size, readonly=False, name=None)`` maps the first ``size``
    bytes of ``fd``, which may be closed afterwards; ``name`` is the segment's
    (arrays over it pickle as a reference to it).  ``Mapping()`` is a closed
    placeholder.

    Every buffer exported from it (memoryviews, NumPy arrays) holds a
    reference to it, so closing a handle never invalidates a live view and
    never raises BufferError: close() only stops new exports.
    """

    def __cinit__(self, int fd=-1, Py_ssize_t size=0, bint readonly=False, name=None):
        self.addr = NULL
        self.size = 0
        self.closed = True
        self.readonly = readonly
        self.name = name
        if fd < 0:
            return  # the closed placeholder
        if size <= 0:
            raise ValueError("cannot map an empty shared memory segment")
        cdef int prot = PROT_READ if readonly else PROT_READ | PROT_WRITE
        cdef void* p = mmap(NULL, <size_t>size, prot, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            PyErr_SetFromErrno(OSError)
        self.addr = <char*>p
        self.size = size
        self.closed = False

    def __dealloc__(self):
        if self.addr != NULL:
            munmap(self.addr, <size_t>self.size)

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        if self.closed:
            raise ValueError("the shared memory handle is closed")
        PyBuffer_FillInfo(buffer, self, self.addr, self.size, self.readonly, flags)

    def __releasebuffer__(self, Py_buffer* buffer):
        pass

    def __len__(self):
        return self.size

    @property
    def address(self):
        """The address the segment is mapped at, in this process."""
        return <size_t>self.addr

    def close(self):
        """Refuse new exports; the memory stays mapped while any export lives."""
        self.closed = True
