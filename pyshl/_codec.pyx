# cython: language_level=3, boundscheck=True, wraparound=True, cdivision=False
# cython: embedsignature=True, embedsignature.format=clinic, binding=False
# cython: freethreading_compatible=True
"""The pyshl core: the ShareableList segment layout, item packing and
unpacking, slot access, construction, scans and atomics.

Segment layout (identical to the standard library's, 3.9+; native byte order):

    0                 int64 n
    8 + 8k, k=0..n    int64 offset of slot k, relative to the data area
    DS = 8(n+2)       data area; slot k is [DS+off_k, DS+off_(k+1))
    F = DS + off_n    n format entries, 8 NUL-padded bytes each
    C = F + 8n        n int8 codes: 0 number, 1 str, 2 bytes, 3 None

The segment is untrusted: any process may write anything into it.  Attaching
validates n and off_n against the segment size (O(1)); every access then
validates exactly the offsets it reads, so no pointer ever leaves the segment.

This file is the table of contents; each concern lives in its own file, all
compiled into this one C module so that the hot paths stay direct C calls.
"""

from pyshl._mapping cimport Mapping

# The placeholder mapping of a closed (or never opened) list.
cdef Mapping _CLOSED = Mapping()
region_setup()       # free-threaded builds: a fork child starts item locks afresh

include "_formats.pxi"        # item kinds: the table, format entries, packing values
include "_slots.pxi"          # entering the mapping, indexes, one slot: decode, read, write
include "_construction.pxi"   # plan, fill and publish a new segment; attach to one
include "_scans.pxi"          # count, index and `in`, vectorised over runs of numbers
include "_atomics.pxi"        # fetch_add, compare_exchange, load, store of one item
include "_aggregate.pxi"      # add_at: each target's deltas combined, one atomic add each
include "_elements.pxi"       # fetch_add, compare_exchange, add_at on NumPy arrays' elements
include "_locks.pxi"          # Lock: a cross-process mutex in one int item
include "_list.pxi"           # the ShareableList class and its iterator
