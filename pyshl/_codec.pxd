# The list type's C fields, declared once for every concern of the core.

from libc.stdint cimport int64_t

from pyshl._mapping cimport Mapping


cdef extern from "_slots.h":
    ctypedef struct pyshl_layout:
        const char* offsets
        char* data
        char* formats
        char* codes
        Py_ssize_t n
        int64_t data_size


cdef class ShareableList:
    cdef readonly object shm
    cdef Mapping _map             # the pinned-by-callers mapping; _CLOSED once closed
    cdef pyshl_layout _layout     # where the tables are in _map
    cdef object _creator_pid      # the pid that created the segment; None when attached
    cdef object __weakref__
