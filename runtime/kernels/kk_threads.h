/* kk_threads.h: the thread pool's internal entry points (see threads.c; not part of the API). */
#ifndef KK_THREADS_H
#define KK_THREADS_H

#include "kiln_kernels.h"

/* kiln_parallel_for with the range cut into about `chunks_per_thread` chunks per thread
 * (kiln_parallel_for uses 4). More, smaller chunks balance better when a thread runs slowly
 * (another process on its core) at the cost of one atomic claim each: for long loops of
 * uniform work (a convolution's tiles). */
void kk_parallel_for_chunks(kiln_range_fn fn, void *ctx, long n, long grain,
                            int chunks_per_thread);

#endif
