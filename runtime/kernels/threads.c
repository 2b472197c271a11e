/* threads.c: the kernels' thread pool (see kiln_parallel_for in kiln_kernels.h).
 *
 * One pool per process: the calling thread runs the first range, workers the others. A job is
 * published by bumping a generation counter; workers spin on it for a short while (a new job
 * usually follows within microseconds inside one graph), then yield, then sleep on a condition
 * variable. The caller spins until every worker has finished its range.
 */
#define _GNU_SOURCE
#include "kiln_kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#define KK_MAX_THREADS 64
#define KK_SPINS 20000   /* pause instructions before yielding (about 50-100 us) */
#define KK_YIELDS 200    /* sched_yield calls before sleeping */

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
static unsigned long g_gen;
static int g_sleepers;
static int g_pending;
static struct {
    kiln_range_fn fn;
    void *ctx;
    long n;
    int parts;
} g_job;
static __thread int t_in_pool;
static unsigned long g_start_gen[KK_MAX_THREADS];

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

static void *worker_main(void *arg) {
    int id = (int)(long)arg;
    t_in_pool = 1;
    unsigned long seen = g_start_gen[id];   /* the generation before its first job */
    for (;;) {
        unsigned long gen;
        long spins = 0;
        while ((gen = LOAD(&g_gen)) == seen) {
            spins++;
            if (spins < KK_SPINS) {
                KK_RELAX();
            } else if (spins < KK_SPINS + KK_YIELDS) {
                sched_yield();
            } else {
                pthread_mutex_lock(&g_mu);
                __atomic_add_fetch(&g_sleepers, 1, __ATOMIC_SEQ_CST);
                while ((gen = LOAD(&g_gen)) == seen) pthread_cond_wait(&g_cv, &g_mu);
                __atomic_sub_fetch(&g_sleepers, 1, __ATOMIC_SEQ_CST);
                pthread_mutex_unlock(&g_mu);
                break;
            }
        }
        seen = gen;
        int parts = g_job.parts;
        if (id < parts) {
            long lo = (long)((double)g_job.n * id / parts);
            long hi = (long)((double)g_job.n * (id + 1) / parts);
            if (hi > lo) g_job.fn(g_job.ctx, lo, hi);
            __atomic_sub_fetch(&g_pending, 1, __ATOMIC_SEQ_CST);
        }
    }
    return NULL;
}

static void after_fork_child(void) {
    /* the workers did not survive fork(): start new ones on demand */
    g_started = 0;
    g_sleepers = 0;
    g_pending = 0;
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
        g_start_gen[g_started + 1] = LOAD(&g_gen);
        int rc = pthread_create(&t, &attr, worker_main, (void *)(long)(g_started + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        g_started++;
    }
    return g_started + 1;
}

void kiln_parallel_for(kiln_range_fn fn, void *ctx, long n, long grain) {
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
    g_job.fn = fn;
    g_job.ctx = ctx;
    g_job.n = n;
    g_job.parts = parts;
    STORE(&g_pending, parts - 1);
    __atomic_add_fetch(&g_gen, 1, __ATOMIC_SEQ_CST);
    if (LOAD(&g_sleepers) > 0) {
        pthread_mutex_lock(&g_mu);
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
    t_in_pool = 1;
    long hi = (long)((double)n / parts);
    if (hi > 0) fn(ctx, 0, hi);
    t_in_pool = 0;
    long spins = 0;
    while (LOAD(&g_pending) > 0) {
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
