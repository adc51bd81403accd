# cython: language_level=3, embedsignature=True, embedsignature.format=clinic
# cython: binding=False, freethreading_compatible=True
"""The shared mapping of a whole segment, unmapped when its last user goes after close()."""

cimport cython
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.exc cimport PyErr_SetFromErrno
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap
from posix.stat cimport struct_stat
from posix.types cimport off_t
from posix.unistd cimport lseek


cdef extern from "<unistd.h>":
    const int SEEK_HOLE      # Linux 3.1+, macOS, FreeBSD (Python.h asks for _GNU_SOURCE)

cdef extern from "_region.h":
    int pyshl_fstat(int fd, struct_stat* status) nogil


cdef class Mapping:
    """A shared mapping of a whole segment, unmapped when the last user goes.

    ``Mapping(fd, size, readonly=False, name=None, reserved=False)`` maps the
    first ``size`` bytes of ``fd``, which may be closed afterwards; ``name`` is
    the segment's (arrays over it pickle as a reference to it); ``reserved``
    says the caller just reserved every page (see ``first_hole``).
    ``Mapping()`` is a closed placeholder.

    Users are the calls touching the memory (see _region.h) and the Exports
    that every buffer of it (memoryviews, NumPy arrays) is made over, so
    closing a handle never invalidates a live view and never raises
    BufferError: close() stops new users, and the memory is unmapped when the
    last one goes.  A Mapping has no buffer of its own: NumPy would keep it,
    not a user, as an array's owner.
    """

    def __cinit__(self, int fd=-1, Py_ssize_t size=0, bint readonly=False, name=None,
                  bint reserved=False):
        region_init(&self.region, NULL, 0)
        self.readonly = readonly
        self.name = name
        self.first_hole = 0
        if fd < 0:
            return  # the closed placeholder
        if size <= 0:
            raise ValueError("cannot map an empty shared memory segment")
        cdef struct_stat status
        if pyshl_fstat(fd, &status) != 0:
            PyErr_SetFromErrno(OSError)
        self.identity = (status.st_dev, status.st_ino)
        # Where the pages that were never written begin.  Reading one on
        # tmpfs allocates it (SIGBUS when /dev/shm is full), so readers of
        # untrusted segments must not touch anything from there on.  A file
        # whose every page is allocated (written, or reserved by
        # posix_fallocate, as a creator that says `reserved` did) has none:
        # its block count says so at once, where SEEK_HOLE walks every page
        # on tmpfs (~35 ns each).  (Blocks reserved past the end could hide a
        # hole; whoever may do that may as well shrink the segment, which
        # readers cannot survive either.)  Where the system cannot tell,
        # every byte counts as written.
        cdef off_t hole = size
        if not reserved and status.st_blocks * 512 < size:
            hole = lseek(fd, 0, SEEK_HOLE)
        self.first_hole = size if hole < 0 or hole > size else <Py_ssize_t>hole
        cdef int prot = PROT_READ if readonly else PROT_READ | PROT_WRITE
        cdef void* p = mmap(NULL, <size_t>size, prot, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            PyErr_SetFromErrno(OSError)
        region_init(&self.region, <char*>p, size)

    def __dealloc__(self):
        # Every user holds a reference to this object: none is left.
        region_close(&self.region)

    def __len__(self):
        return self.region.size

    @property
    def address(self):
        """The address the segment is mapped at, in this process."""
        return <size_t>self.region.addr

    @property
    def closed(self):
        """True once close() was called: no new user is admitted."""
        return region_closed(&self.region)

    def close(self):
        """Refuse new users; the memory stays mapped while any user (an export) lives."""
        region_close(&self.region)

    def export(self):
        """An Export of the whole mapping: what buffers and NumPy arrays are made over.
        Raises ValueError if the mapping is closed."""
        return Export(self)


@cython.final
@cython.no_gc_clear      # its mapping must be there to leave when it goes
cdef class Export:
    """One user of a mapping for exactly as long as this object lives.

    ``np.ndarray(buffer=obj)`` releases its buffer at once and keeps only a
    reference to ``obj``, so a buffer export cannot count such an array as a
    user: arrays over a segment are made over an Export, which became a user
    when it was made and stops being one when the last array over it goes.
    Unlike a memoryview, it cannot be released early.
    """
    cdef readonly Mapping mapping

    def __cinit__(self, Mapping mapping not None):
        if not region_enter(&mapping.region):
            raise ValueError("the shared memory handle is closed")
        self.mapping = mapping

    def __dealloc__(self):
        if self.mapping is not None:
            region_leave(&self.mapping.region)

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        PyBuffer_FillInfo(buffer, self, self.mapping.region.addr, self.mapping.region.size,
                          self.mapping.readonly, flags)

    def __releasebuffer__(self, Py_buffer* buffer):
        pass

    def __len__(self):
        return self.mapping.region.size
