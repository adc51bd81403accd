/* A mapped region's lifetime and its threads: users counted, unmapped when the last leaves after close. */
#ifndef PYSHL_REGION_H
#define PYSHL_REGION_H

#include <stdint.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <Python.h>

/* One mapping of a segment.  `state` is 2 * users + closed: every access to
   the memory happens between pyshl_region_enter() and pyshl_region_leave(),
   and exported buffers count as users for their whole life.  close() only
   sets the bit; whoever brings the state to "closed, no users" (close() or
   the last leave) unmaps, exactly once.  The object holding the region is
   never swapped out of a list, so reaching the region needs no reference
   count: the caller's reference to the list keeps it.

   With the GIL every update happens with the GIL held (pyshl releases it
   only between an enter and its leave), so a load and a store suffice
   (relaxed atomics: a lock's waiter reads the state without the GIL);
   free-threaded builds use atomic read-modify-writes.

   Free-threaded builds also keep what the GIL gave threads for free: a value
   read is one that some thread wrote.  Every item write holds `mutex`; one
   that changes an item's kind or writes text also makes `seq` odd while it
   writes (a seqlock).  Readers of text and scans hold the mutex; the
   lock-free number reads (and the atomics' loads) check that `seq` was even
   and unchanged around them.  The atomics' writes stay lock-free: they act
   on numbers only, and one racing a change of the item's type follows the
   cross-process rules. */
typedef struct {
    char *addr;
    Py_ssize_t size;
    uint64_t state;
#ifdef Py_GIL_DISABLED
    PyMutex mutex;
    uint64_t seq;
    pid_t pid;             /* the process whose mutex this is (see pyshl_items_ready) */
#endif
} pyshl_region;

#define PYSHL_CLOSED 1u
#define PYSHL_USER 2u

static inline void pyshl_region_init(pyshl_region *r, char *addr, Py_ssize_t size) {
    r->addr = addr;
    r->size = size;
    r->state = addr == NULL ? PYSHL_CLOSED : 0;
#ifdef Py_GIL_DISABLED
    memset(&r->mutex, 0, sizeof(r->mutex));
    r->seq = 0;
    r->pid = getpid();
#endif
}

/* fstat() as a system call: glibc 2.33+ exports fstat (and 2.28+ fcntl) under
   symbol versions newer than manylinux2014's glibc 2.17, so a wheel built on
   a newer system could not be repaired to it.  struct stat is the kernel's on
   the 64-bit targets built (x86_64, aarch64). */
static inline int pyshl_fstat(int fd, struct stat *status) {
    return (int)syscall(SYS_fstat, fd, status);
}

/* Plain updates of the state, with the GIL. */
static inline uint64_t pyshl_state_load(const pyshl_region *r) {
    return __atomic_load_n(&r->state, __ATOMIC_RELAXED);
}

static inline void pyshl_state_store(pyshl_region *r, uint64_t v) {
    __atomic_store_n(&r->state, v, __ATOMIC_RELAXED);
}

static inline void pyshl_region_unmap(pyshl_region *r) {
    if (r->addr != NULL)
        munmap(r->addr, (size_t)r->size);
}

/* Become a user, unless the region is closed (then 0). */
static inline int pyshl_region_enter(pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    uint64_t old = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
    do {
        if (old & PYSHL_CLOSED)
            return 0;
    } while (!__atomic_compare_exchange_n(&r->state, &old, old + PYSHL_USER, 1,
                                          __ATOMIC_ACQUIRE, __ATOMIC_RELAXED));
    return 1;
#else
    uint64_t state = pyshl_state_load(r);
    if (state & PYSHL_CLOSED)
        return 0;
    pyshl_state_store(r, state + PYSHL_USER);
    return 1;
#endif
}

/* Stop being a user; the last user after close() unmaps. */
static inline void pyshl_region_leave(pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    if (__atomic_fetch_sub(&r->state, PYSHL_USER, __ATOMIC_ACQ_REL) == (PYSHL_USER | PYSHL_CLOSED))
        pyshl_region_unmap(r);
#else
    uint64_t state = pyshl_state_load(r) - PYSHL_USER;
    pyshl_state_store(r, state);
    if (state == PYSHL_CLOSED)
        pyshl_region_unmap(r);
#endif
}

/* A brief use: the caller runs no Python code and keeps the GIL until it
   leaves (the fast paths: one atomic access).  With the GIL nothing can
   close the region in between, so only the check is needed. */
static inline int pyshl_region_enter_brief(pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    return pyshl_region_enter(r);
#else
    return !(pyshl_state_load(r) & PYSHL_CLOSED);
#endif
}

static inline void pyshl_region_leave_brief(pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    pyshl_region_leave(r);
#else
    (void)r;
#endif
}

/* Refuse new users; unmap now if there are none.  Idempotent. */
static inline void pyshl_region_close(pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    if (__atomic_fetch_or(&r->state, PYSHL_CLOSED, __ATOMIC_ACQ_REL) == 0)
        pyshl_region_unmap(r);
#else
    uint64_t old = pyshl_state_load(r);
    pyshl_state_store(r, old | PYSHL_CLOSED);
    if (old == 0)
        pyshl_region_unmap(r);
#endif
}

/* Also asked without the GIL (by a lock's waiter): an atomic load either way. */
static inline int pyshl_region_closed(const pyshl_region *r) {
    return (int)(__atomic_load_n(&r->state, __ATOMIC_ACQUIRE) & PYSHL_CLOSED);
}

#ifdef Py_GIL_DISABLED
/* This process's id, refreshed in a fork child (set up at module import). */
static pid_t pyshl_this_pid;

static void pyshl_forked(void) { pyshl_this_pid = getpid(); }
#endif

static inline void pyshl_region_setup(void) {
#ifdef Py_GIL_DISABLED
    pyshl_this_pid = getpid();
    pthread_atfork(NULL, NULL, pyshl_forked);
#endif
}

#ifdef Py_GIL_DISABLED
/* A fork child inherits the mutex as it was, possibly held (or handed to a
   thread that does not exist in the child): the first user in a new process
   starts it afresh.  r->pid is -1 while one thread does so. */
static inline void pyshl_items_ready(pyshl_region *r) {
    pid_t seen = __atomic_load_n(&r->pid, __ATOMIC_ACQUIRE);
    while (seen != pyshl_this_pid) {
        if (seen != -1 && __atomic_compare_exchange_n(&r->pid, &seen, -1, 0, __ATOMIC_ACQUIRE,
                                                      __ATOMIC_ACQUIRE)) {
            memset(&r->mutex, 0, sizeof(r->mutex));
            r->seq = 0;
            __atomic_store_n(&r->pid, pyshl_this_pid, __ATOMIC_RELEASE);
            return;
        }
        seen = __atomic_load_n(&r->pid, __ATOMIC_ACQUIRE);
    }
}
#endif

/* The seqlock of free-threaded builds; nothing with the GIL. */
static inline void pyshl_write_begin(pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    pyshl_items_ready(r);
    PyMutex_Lock(&r->mutex);
    __atomic_store_n(&r->seq, r->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
#else
    (void)r;
#endif
}

static inline void pyshl_write_end(pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    __atomic_store_n(&r->seq, r->seq + 1, __ATOMIC_RELEASE);
    PyMutex_Unlock(&r->mutex);
#else
    (void)r;
#endif
}

/* Writers of numbers into number slots, readers of text, scans: exclude
   the writers above. */
static inline void pyshl_items_lock(pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    pyshl_items_ready(r);
    PyMutex_Lock(&r->mutex);
#else
    (void)r;
#endif
}

static inline void pyshl_items_unlock(pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    PyMutex_Unlock(&r->mutex);
#else
    (void)r;
#endif
}

/* A lock-free number read: take the ticket, read, then ask whether a writer
   overlapped (then read again under the mutex). */
static inline uint64_t pyshl_read_ticket(const pyshl_region *r) {
#ifdef Py_GIL_DISABLED
    return __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
#else
    (void)r;
    return 0;
#endif
}

static inline int pyshl_read_overlapped(const pyshl_region *r, uint64_t ticket) {
#ifdef Py_GIL_DISABLED
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return (ticket & 1) || __atomic_load_n(&r->seq, __ATOMIC_RELAXED) != ticket;
#else
    (void)r;
    (void)ticket;
    return 0;
#endif
}

/* Per-thread guesses that other threads may also update: relaxed atomics. */
static inline int64_t pyshl_guess_load(const int64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void pyshl_guess_store(int64_t *p, int64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* An iterator's position, which threads sharing the iterator take turns at. */
static inline Py_ssize_t pyshl_index_take(Py_ssize_t *p) {
    return __atomic_fetch_add(p, 1, __ATOMIC_RELAXED);
}

static inline Py_ssize_t pyshl_index_load(const Py_ssize_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* A load of such a field. */
static inline long pyshl_load_long(const long *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Exchange for a C field that threads may race on (a pid, a flag). */
static inline long pyshl_exchange_long(long *p, long v) {
    return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL);
}

#endif
