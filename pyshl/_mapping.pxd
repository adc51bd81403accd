# The shared mapping of a whole segment: its declared fields, for cimport.

cdef class Mapping:
    cdef char* addr
    cdef Py_ssize_t size
    cdef readonly bint closed
    cdef readonly bint readonly    # mapped PROT_READ: exports are read-only buffers
    cdef readonly object name      # the segment's name (None for an anonymous mapping)
