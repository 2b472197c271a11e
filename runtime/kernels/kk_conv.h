/* kk_conv.h: internal convolution entry points shared by conv.c and conv_shift.c (not part of
 * the API). */
#ifndef KK_CONV_H
#define KK_CONV_H

#include "kiln_kernels.h"

/* kiln_conv2d_f32 without a column matrix (conv_shift.c): any stride, dilation, padding and
 * grouping. Returns 0, or -1 when its scratch memory could not be allocated (nothing written). */
int kk_conv2d_shift(const kiln_conv2d *p, const float *x, const float *w, const float *scale,
                    const float *bias, const float *residual, float *y, int act);

/* The same for image `img` of the batch by the definition (a plain loop, no memory): the
 * fallback when scratch memory runs out. */
void kk_conv2d_reference(const kiln_conv2d *p, const float *x, const float *w,
                         const float *scale, const float *bias, const float *residual, float *y,
                         int act, long img);

#endif
