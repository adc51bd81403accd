/* The C side of ShareableList.lock(i): a mutex whose whole state is one int
   item, waited on with the Linux futex, taken over when its holder dies. */
#ifndef PYSHL_LOCK_H
#define PYSHL_LOCK_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>

#include "_region.h"
#include "_claims.h"

/* The item holds 0 when the lock is free, else the holder's claim id (see
   _claims.h: it names a thread in any PID namespace), with PYSHL_LOCK_WAITERS
   set once someone waits, so that release() knows to wake one.  It all lives
   in the item's low 32 bits, the futex word. */
#define PYSHL_LOCK_WAITERS 0x40000000u
#define PYSHL_LOCK_HOLDER 0x3fffffffu

/* How often a waiter wakes to check that the holder still lives. */
#define PYSHL_LOCK_CHECK_NS 100000000LL

static inline uint32_t *pyshl_lock_word(char *slot) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint32_t *)(slot + 4);
#else
    return (uint32_t *)slot;
#endif
}

static inline double pyshl_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* The holder's thread id, 0 if the lock is free. */
static inline uint32_t pyshl_lock_holder(uint32_t *word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE) & PYSHL_LOCK_HOLDER;
}

/* Try once: 1 if taken, 0 if not. */
static inline int pyshl_lock_try(uint32_t *word, uint32_t id) {
    uint32_t expected = 0;
    return __atomic_compare_exchange_n(word, &expected, id, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static inline void pyshl_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Acquire as claim `id` (whose descriptor is `fd`), waiting up to `timeout`
   seconds (< 0: forever; 0: do not wait).
   Returns 1 if taken, 2 if taken over from a holder that died, 0 on
   timeout, -1 if this thread holds it already and would wait forever, -2
   once `region` (entered by the caller) is closed, 3 after `slice` seconds
   without it (before the timeout): the caller runs signal handlers (Ctrl-C)
   and calls again.  Call it without the GIL. */
static int pyshl_lock_acquire(uint32_t *word, uint32_t id, int fd, double timeout,
                              const pyshl_region *region, double slice) {
    double start = pyshl_now();
    double deadline = timeout < 0 ? 0 : start + timeout, left;
    double slice_end = start + slice;
    uint32_t cur;
    struct timespec wait;
    long long ns;
    int spin;
    for (spin = 0; timeout != 0 && spin < 100; spin++) {     /* a short spin first */
        cur = __atomic_load_n(word, __ATOMIC_RELAXED);
        if (cur == 0 && pyshl_lock_try(word, id))
            return 1;
        pyshl_pause();
    }
    for (;;) {
        if (pyshl_region_closed(region))
            return -2;             /* nobody can release through a closed list */
        cur = __atomic_load_n(word, __ATOMIC_RELAXED);
        if (cur == 0) {
            /* Others may wait too: keep the flag, so that release wakes one. */
            if (__atomic_compare_exchange_n(word, &cur, id | PYSHL_LOCK_WAITERS, 0,
                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                return 1;
            continue;
        }
        if ((cur & PYSHL_LOCK_HOLDER) == id) {
            if (timeout < 0)
                return -1;         /* (with a timeout, wait it out, as threading.Lock does) */
        } else if (!pyshl_claim_alive(fd, cur & PYSHL_LOCK_HOLDER)) {
            if (__atomic_compare_exchange_n(word, &cur, id | PYSHL_LOCK_WAITERS, 0,
                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                return 2;
            continue;
        }
        ns = PYSHL_LOCK_CHECK_NS;
        if (timeout >= 0) {
            left = deadline - pyshl_now();
            if (left <= 0)
                return 0;
            if (left * 1e9 < ns)
                ns = (long long)(left * 1e9) + 1;
        }
        left = slice_end - pyshl_now();
        if (left <= 0)
            return 3;
        if (left * 1e9 < ns)
            ns = (long long)(left * 1e9) + 1;
        if (!(cur & PYSHL_LOCK_WAITERS)) {
            if (!__atomic_compare_exchange_n(word, &cur, cur | PYSHL_LOCK_WAITERS, 0,
                                             __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                continue;
            cur |= PYSHL_LOCK_WAITERS;
        }
        wait.tv_sec = ns / 1000000000LL;
        wait.tv_nsec = ns % 1000000000LL;
        /* Not FUTEX_PRIVATE_FLAG: the word is shared between processes.  It
           returns when woken, when the word is no longer `cur`, or after `wait`,
           to look at the holder again. */
        syscall(SYS_futex, word, FUTEX_WAIT, cur, &wait, NULL, 0);
    }
}

/* Release: 0, or -1 if this thread does not hold it (nothing changes). */
static inline int pyshl_lock_release(uint32_t *word, uint32_t id) {
    uint32_t cur = __atomic_load_n(word, __ATOMIC_RELAXED);
    if ((cur & PYSHL_LOCK_HOLDER) != id)
        return -1;
    if (__atomic_exchange_n(word, 0, __ATOMIC_RELEASE) & PYSHL_LOCK_WAITERS)
        syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
    return 0;
}

#endif
