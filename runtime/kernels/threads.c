/* threads.c: the kernels' thread pool (see kiln_parallel_for in kiln_kernels.h).
 *
 * One pool per process. A job's range is cut into chunks (a few per thread, each at least
 * `grain` long) that the calling thread and the workers claim one at a time from a shared
 * ticket; so a worker that the OS has not scheduled yet (the machine is busy with other
 * processes) delays nothing: the caller takes its chunks instead, and a job ends as soon as
 * every chunk *claimed* is done.
 *
 * The ticket packs the job's generation (high 32 bits) and the next chunk (low 32 bits) in
 * one atomic word. Publishing a job first sets the ticket to (new generation, NOT_READY), then
 * writes the job's fields, then opens the ticket: a worker that read the fields of one job can
 * only claim chunks of that job (its claim names the generation it saw before the fields). Workers spin for a short while after each job (a new job usually
 * follows within microseconds inside one graph), then yield, then sleep.
 */
#define _GNU_SOURCE
#include "kiln_kernels.h"
#include "kk_threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define KK_MAX_THREADS 64
#define KK_SPINS 20000   /* pause instructions before yielding (tens of microseconds) */
#define KK_YIELDS 50     /* sched_yield calls before sleeping */
#define KK_CHUNKS_PER_THREAD 4
#define NOT_READY 0xFFFFFFFFu

#if defined(__x86_64__) || defined(__i386__)
#define KK_RELAX() __builtin_ia32_pause()
#else
#define KK_RELAX() ((void)0)
#endif

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

static int g_nthreads;                 /* configured total, 0 until decided */
static int g_started;                  /* workers running */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t g_busy = PTHREAD_MUTEX_INITIALIZER;   /* one job at a time */
static uint64_t g_ticket;              /* (generation << 32) | next chunk */
static int g_sleepers;
static long g_done;                    /* chunks finished in the current job */
static struct {
    kiln_range_fn fn;
    void *ctx;
    long n, chunks;
} g_job;
static __thread int t_in_pool;

static int env_threads(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    int n = atoi(s);
    return n > 0 ? n : 0;
}

static int default_threads(void) {
    int n = env_threads("KILN_NUM_THREADS");
    if (!n) n = env_threads("OMP_NUM_THREADS");
#ifdef CPU_COUNT
    if (!n) {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
    }
#endif
    if (!n) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return n > KK_MAX_THREADS ? KK_MAX_THREADS : n;
}

void kiln_set_num_threads(int n) {
    if (n <= 0) n = default_threads();
    if (n > KK_MAX_THREADS) n = KK_MAX_THREADS;
    pthread_mutex_lock(&g_busy);
    STORE(&g_nthreads, n);
    pthread_mutex_unlock(&g_busy);
}

int kiln_get_num_threads(void) {
    int n = LOAD(&g_nthreads);
    if (!n) {
        n = default_threads();
        STORE(&g_nthreads, n);
    }
    return n;
}

/* Claim and run chunks of job `gen` until none is left. */
static void run_chunks(uint32_t gen, kiln_range_fn fn, void *ctx, long n, long chunks) {
    for (;;) {
        uint64_t t = LOAD(&g_ticket);
        if ((uint32_t)(t >> 32) != gen) return;
        uint32_t claim = (uint32_t)t;
        if (claim == NOT_READY || (long)claim >= chunks) return;
        long i = (long)claim;
        if (!__atomic_compare_exchange_n(&g_ticket, &t, t + 1, 0, __ATOMIC_SEQ_CST,
                                         __ATOMIC_SEQ_CST))
            continue;
        long lo = (long)((double)n * i / chunks), hi = (long)((double)n * (i + 1) / chunks);
        if (hi > lo) fn(ctx, lo, hi);
        __atomic_add_fetch(&g_done, 1, __ATOMIC_SEQ_CST);
    }
}

static void *worker_main(void *arg) {
    (void)arg;
    t_in_pool = 1;
    uint32_t seen = (uint32_t)(LOAD(&g_ticket) >> 32);
    for (;;) {
        uint32_t gen;
        long spins = 0;
        while ((gen = (uint32_t)(LOAD(&g_ticket) >> 32)) == seen) {
            spins++;
            if (spins < KK_SPINS) {
                KK_RELAX();
            } else if (spins < KK_SPINS + KK_YIELDS) {
                sched_yield();
            } else {
                pthread_mutex_lock(&g_mu);
                __atomic_add_fetch(&g_sleepers, 1, __ATOMIC_SEQ_CST);
                while ((gen = (uint32_t)(LOAD(&g_ticket) >> 32)) == seen)
                    pthread_cond_wait(&g_cv, &g_mu);
                __atomic_sub_fetch(&g_sleepers, 1, __ATOMIC_SEQ_CST);
                pthread_mutex_unlock(&g_mu);
                break;
            }
        }
        seen = gen;
        /* wait until the job's fields are written (the ticket opens), then read them; a claim
         * on a newer ticket fails (run_chunks compares the generation), so fields that a newer
         * job overwrote meanwhile are never used */
        uint64_t t;
        while ((uint32_t)(t = LOAD(&g_ticket)) == NOT_READY && (uint32_t)(t >> 32) == gen)
            KK_RELAX();
        if ((uint32_t)(t >> 32) != gen) continue;
        kiln_range_fn fn = g_job.fn;
        void *ctx = g_job.ctx;
        long n = g_job.n, chunks = g_job.chunks;
        run_chunks(gen, fn, ctx, n, chunks);
    }
    return NULL;
}

static void after_fork_child(void) {
    /* the workers did not survive fork(): start new ones on demand */
    g_started = 0;
    g_sleepers = 0;
    pthread_mutex_init(&g_mu, NULL);
    pthread_cond_init(&g_cv, NULL);
    pthread_mutex_init(&g_busy, NULL);
}

static int start_workers(int want) {
    static int atfork_done;
    if (!atfork_done) {
        pthread_atfork(NULL, NULL, after_fork_child);
        atfork_done = 1;
    }
    while (g_started < want - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker_main, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        g_started++;
    }
    return g_started + 1;
}

void kiln_parallel_for(kiln_range_fn fn, void *ctx, long n, long grain) {
    kk_parallel_for_chunks(fn, ctx, n, grain, KK_CHUNKS_PER_THREAD);
}

void kk_parallel_for_chunks(kiln_range_fn fn, void *ctx, long n, long grain,
                            int chunks_per_thread) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int parts = kiln_get_num_threads();
    if ((long)parts > n / grain) parts = (int)(n / grain);
    if (parts <= 1 || t_in_pool || pthread_mutex_trylock(&g_busy) != 0) {
        fn(ctx, 0, n);
        return;
    }
    int started = start_workers(parts);
    if (started < parts) parts = started;
    if (parts <= 1) {
        pthread_mutex_unlock(&g_busy);
        fn(ctx, 0, n);
        return;
    }
    long chunks = (long)parts * (chunks_per_thread > 0 ? chunks_per_thread : 1);
    if (chunks > n / grain) chunks = n / grain;
    if (chunks < parts) chunks = parts;
    uint32_t gen = (uint32_t)(LOAD(&g_ticket) >> 32) + 1;
    STORE(&g_ticket, ((uint64_t)gen << 32) | NOT_READY);   /* older claims fail from here */
    g_job.fn = fn;
    g_job.ctx = ctx;
    g_job.n = n;
    g_job.chunks = chunks;
    STORE(&g_done, 0);
    STORE(&g_ticket, (uint64_t)gen << 32);                 /* publishes the job */
    if (LOAD(&g_sleepers) > 0) {
        pthread_mutex_lock(&g_mu);
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
    t_in_pool = 1;
    run_chunks(gen, fn, ctx, n, chunks);
    t_in_pool = 0;
    long spins = 0;
    while (LOAD(&g_done) < chunks) {     /* chunks claimed by workers still running */
        if (++spins < KK_SPINS) KK_RELAX();
        else sched_yield();
    }
    pthread_mutex_unlock(&g_busy);
}

void *kiln_scratch(int slot, size_t bytes) {
    static __thread void *mem[4];
    static __thread size_t size[4];
    if (slot < 0 || slot > 3) return NULL;
    if (bytes == 0) bytes = 64;
    if (size[slot] < bytes) {
        free(mem[slot]);
        mem[slot] = NULL;
        size[slot] = 0;
        size_t want = bytes + bytes / 4;
        void *p = NULL;
        if (posix_memalign(&p, 64, want) != 0) return NULL;
        mem[slot] = p;
        size[slot] = want;
    }
    return mem[slot];
}
