/* conv_packed.h: convolution with weights packed at plan time (see conv_packed.c). */
#ifndef KILN_CONV_PACKED_H
#define KILN_CONV_PACKED_H

#include "../kernels/kiln_kernels.h"

/* Floats of packed weights for f filters in `groups` groups of kdim taps each. */
long rtk_conv_packed_size(long f, long groups, long kdim);
/* Bytes of workspace one image needs (a padded input copy and the uncompacted output for
 * stride 1; else the column matrix and a tail tile). */
long rtk_conv_workspace_bytes(const kiln_conv2d *p);
/* Pack w (f, kdim) (MXNet's (f, c/groups, kh, kw)), each filter times scale[f] if given. */
void rtk_conv_pack(const float *w, const float *scale, long f, long groups, long kdim,
                   float *packed);
/* y = act(conv(x) + shift[f] + residual) for one image (p->n ignored); act: enum kiln_act
 * NONE, RELU, SIGMOID or TANH. ws: rtk_conv_workspace_bytes, 64-byte aligned. Not for
 * depthwise convolutions (use kiln_conv2d_f32). */
void rtk_conv2d_f32(const kiln_conv2d *p, const float *x, const float *packed,
                    const float *shift, const float *residual, float *y, int act, void *ws);

#endif /* KILN_CONV_PACKED_H */
