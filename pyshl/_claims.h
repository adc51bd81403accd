/* Lock holders' claims: ids that name a thread in any PID namespace, alive
   exactly as long as the thread (an open-file-description lock on the file).

   Thread ids mean different threads, or nothing, in another PID namespace
   (containers sharing /dev/shm), so a Lock item holds a claim id instead: a
   random 30-bit number that the holding thread claims on the segment's file
   with an OFD write lock on one byte at CLAIM_BASE + id, far past the end of
   the file (its bytes and layout are untouched).  The kernel drops the lock
   the moment its holder's descriptor closes: when the thread ends (the
   thread's ThreadClaims, in a threading.local, closes it), when the process dies (SIGKILL
   included) and when the process stops using the file (its last
   ShareableList that made locks goes).  A waiter asks F_OFD_GETLK whether
   the holder's byte is still locked; ids are unique among live claims on a
   file, as a taken byte cannot be locked again.

   Each thread has one descriptor per file it locks, opened on its first
   lock there.  A process-wide registry, under a mutex, keeps them; a thread
   finds its id through a small per-thread cache keyed by the file's serial
   (never reused), so the fast path takes no lock. */
#ifndef PYSHL_CLAIMS_H
#define PYSHL_CLAIMS_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PYSHL_CLAIM_BASE ((off_t)1 << 40)
#define PYSHL_CLAIM_IDS 0x3fffffffu       /* the Lock word's holder bits */
#define PYSHL_CLAIM_CACHE 8

typedef struct pyshl_claim {
    struct pyshl_claim *next;
    const void *thread;                   /* &pyshl_thread_token of its thread */
    int fd;
    uint32_t id;
} pyshl_claim;

typedef struct pyshl_claim_file {
    struct pyshl_claim_file *next;
    uint64_t serial;
    dev_t dev;
    ino_t ino;
    Py_ssize_t lists;                     /* ShareableLists of this process using it */
    pyshl_claim *claims;
} pyshl_claim_file;

static pthread_mutex_t pyshl_claims_mutex = PTHREAD_MUTEX_INITIALIZER;
static pyshl_claim_file *pyshl_claim_files;
static uint64_t pyshl_claim_serials;

/* initial-exec on glibc: the fast path's cache is read without a
   __tls_get_addr call (136 bytes of the static TLS that glibc keeps for
   loaded modules; musl refuses such modules). */
#ifdef __GLIBC__
#define PYSHL_TLS __thread __attribute__((tls_model("initial-exec")))
#else
#define PYSHL_TLS __thread
#endif
static PYSHL_TLS char pyshl_thread_token;
static PYSHL_TLS struct {
    uint64_t serial;
    uint32_t id;
    int fd;
} pyshl_claim_cache[PYSHL_CLAIM_CACHE];

static pyshl_claim_file *pyshl_claims_find(uint64_t serial) {
    pyshl_claim_file *f;
    for (f = pyshl_claim_files; f != NULL; f = f->next)
        if (f->serial == serial)
            return f;
    return NULL;
}

static void pyshl_claims_close_all(pyshl_claim_file *f) {
    pyshl_claim *c, *next;
    for (c = f->claims; c != NULL; c = next) {
        next = c->next;
        close(c->fd);
        free(c);
    }
    f->claims = NULL;
}

/* Which thread this is, for pyshl_claims_thread_gone(). */
static const void *pyshl_thread_now(void) { return &pyshl_thread_token; }

/* Thread `thread` ends: its claims go (a lock it held is then taken over). */
static void pyshl_claims_thread_gone(const void *thread) {
    pyshl_claim_file *f;
    pyshl_claim **link, *c;
    pthread_mutex_lock(&pyshl_claims_mutex);
    for (f = pyshl_claim_files; f != NULL; f = f->next) {
        for (link = &f->claims; (c = *link) != NULL;) {
            if (c->thread == thread) {
                *link = c->next;
                close(c->fd);
                free(c);
            } else {
                link = &c->next;
            }
        }
    }
    if (thread == &pyshl_thread_token)    /* (code that runs later in the thread may lock) */
        memset(pyshl_claim_cache, 0, sizeof pyshl_claim_cache);
    pthread_mutex_unlock(&pyshl_claims_mutex);
}

static void pyshl_claims_before_fork(void) { pthread_mutex_lock(&pyshl_claims_mutex); }

static void pyshl_claims_after_fork_parent(void) { pthread_mutex_unlock(&pyshl_claims_mutex); }

/* A fork child shares its parent's descriptors, and so their locks: it
   closes them all (else a dead parent's claims would live on in it) and
   makes its own claims when it locks. */
static void pyshl_claims_after_fork_child(void) {
    pyshl_claim_file *f;
    for (f = pyshl_claim_files; f != NULL; f = f->next)
        pyshl_claims_close_all(f);
    memset(pyshl_claim_cache, 0, sizeof pyshl_claim_cache);
    pthread_mutex_unlock(&pyshl_claims_mutex);      /* this thread locked it before the fork */
}

static int pyshl_claims_setup(void) {
    return pthread_atfork(pyshl_claims_before_fork, pyshl_claims_after_fork_parent,
                          pyshl_claims_after_fork_child) == 0 ? 0 : -1;
}

/* A ShareableList starts using the file (dev, ino) for locks: its serial. */
static uint64_t pyshl_claims_register(dev_t dev, ino_t ino) {
    pyshl_claim_file *f;
    uint64_t serial = 0;
    pthread_mutex_lock(&pyshl_claims_mutex);
    for (f = pyshl_claim_files; f != NULL; f = f->next)
        if (f->dev == dev && f->ino == ino)
            break;
    if (f == NULL && (f = (pyshl_claim_file *)calloc(1, sizeof *f)) != NULL) {
        f->serial = ++pyshl_claim_serials;
        f->dev = dev;
        f->ino = ino;
        f->next = pyshl_claim_files;
        pyshl_claim_files = f;
    }
    if (f != NULL) {
        f->lists++;
        serial = f->serial;
    }
    pthread_mutex_unlock(&pyshl_claims_mutex);
    return serial;                        /* 0: out of memory */
}

/* A ShareableList that registered goes: with the last one, the claims on its
   file go (an unlinked segment's memory must not be kept by them). */
static void pyshl_claims_unregister(uint64_t serial) {
    pyshl_claim_file **link, *f;
    pthread_mutex_lock(&pyshl_claims_mutex);
    for (link = &pyshl_claim_files; (f = *link) != NULL; link = &f->next) {
        if (f->serial == serial) {
            if (--f->lists == 0) {
                *link = f->next;
                pyshl_claims_close_all(f);
                free(f);
            }
            break;
        }
    }
    pthread_mutex_unlock(&pyshl_claims_mutex);
}

/* This thread's claim id on file `serial` from the cache (the fast path), 0
   if it is not there. */
static inline uint32_t pyshl_claim_cached(uint64_t serial) {
    unsigned slot = (unsigned)serial % PYSHL_CLAIM_CACHE;
    return pyshl_claim_cache[slot].serial == serial ? pyshl_claim_cache[slot].id : 0;
}

/* This thread's claim id on file `serial` and its descriptor, 0 if it has
   none yet. */
static uint32_t pyshl_claim_lookup(uint64_t serial, int *fd) {
    unsigned slot = (unsigned)serial % PYSHL_CLAIM_CACHE;
    pyshl_claim_file *f;
    pyshl_claim *c;
    uint32_t id = 0;
    if (pyshl_claim_cache[slot].serial == serial) {
        *fd = pyshl_claim_cache[slot].fd;
        return pyshl_claim_cache[slot].id;
    }
    pthread_mutex_lock(&pyshl_claims_mutex);
    if ((f = pyshl_claims_find(serial)) != NULL) {
        for (c = f->claims; c != NULL; c = c->next) {
            if (c->thread == &pyshl_thread_token) {
                id = c->id;
                *fd = c->fd;
                pyshl_claim_cache[slot].serial = serial;
                pyshl_claim_cache[slot].id = id;
                pyshl_claim_cache[slot].fd = c->fd;
                break;
            }
        }
    }
    pthread_mutex_unlock(&pyshl_claims_mutex);
    return id;
}

static uint32_t pyshl_claim_random(void) {
    uint32_t v = 0;
#ifdef SYS_getrandom
    if (syscall(SYS_getrandom, &v, sizeof v, 0) == (long)sizeof v)
        return v & PYSHL_CLAIM_IDS;
#endif
    {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        v = (uint32_t)(t.tv_nsec * 2654435761u) ^ (uint32_t)getpid() ^ (uint32_t)(uintptr_t)&v;
    }
    return v & PYSHL_CLAIM_IDS;
}

static int pyshl_claim_byte(int fd, int cmd, short type, uint32_t id, struct flock *lk) {
    memset(lk, 0, sizeof *lk);
    lk->l_type = type;
    lk->l_whence = SEEK_SET;
    lk->l_start = PYSHL_CLAIM_BASE + (off_t)id;
    lk->l_len = 1;
    return (int)syscall(SYS_fcntl, fd, cmd, lk);     /* (see pyshl_fstat) */
}

/* Make this thread's claim on file `serial`, opening it by `path` (which must
   still name that file), or find the one it has.  All under the mutex, so
   that a fork meanwhile cannot take the new descriptor into a child that
   would not close it.  Returns the id, or -errno (-ESTALE: `path` names
   another file now). */
static long pyshl_claim_take(uint64_t serial, const char *path) {
    pyshl_claim_file *f;
    pyshl_claim *c;
    struct flock lk;
    struct stat status;
    uint32_t id = 0;
    int fd = -1, tries, err = 0;
    pthread_mutex_lock(&pyshl_claims_mutex);
    if ((f = pyshl_claims_find(serial)) == NULL) {
        err = ENOENT;
        goto done;
    }
    for (c = f->claims; c != NULL; c = c->next)
        if (c->thread == &pyshl_thread_token) {
            id = c->id;                   /* (made by a callback run meanwhile) */
            goto done;
        }
    if ((c = (pyshl_claim *)calloc(1, sizeof *c)) == NULL) {
        err = ENOMEM;
        goto done;
    }
    fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 || pyshl_fstat(fd, &status) != 0) {
        err = errno;
    } else if (status.st_dev != f->dev || status.st_ino != f->ino) {
        err = ESTALE;
    } else {
        for (tries = 0; tries < 64; tries++) {
            id = pyshl_claim_random();
            if (id == 0)
                continue;
            if (pyshl_claim_byte(fd, F_OFD_SETLK, F_WRLCK, id, &lk) == 0)
                break;
            err = errno;
            id = 0;
            if (err != EAGAIN && err != EACCES)
                break;                    /* (taken: another claim has this id) */
        }
        if (id == 0 && err == 0)
            err = EAGAIN;
    }
    if (id == 0) {
        if (fd >= 0)
            close(fd);
        free(c);
        goto done;
    }
    c->thread = &pyshl_thread_token;
    c->fd = fd;
    c->id = id;
    c->next = f->claims;
    f->claims = c;
done:
    pthread_mutex_unlock(&pyshl_claims_mutex);
    return id != 0 ? (long)id : -(long)err;
}

/* Is claim `id` on the file still held by a live thread?  Asked through
   this thread's own descriptor, which sees every other descriptor's locks. */
static int pyshl_claim_alive(int fd, uint32_t id) {
    struct flock lk;
    if (pyshl_claim_byte(fd, F_OFD_GETLK, F_WRLCK, id, &lk) != 0)
        return 1;                         /* cannot tell: never take over */
    return lk.l_type != F_UNLCK;
}

#endif
