/* kk_act.h: internal: one element through a fused kernel's activation (enum kiln_act). */
#ifndef KK_ACT_H
#define KK_ACT_H

#include "kiln_kernels.h"
#include "kiln_math.h"

static inline float kk_act1(float v, int act) {
    switch (act) {
    case KILN_ACT_RELU: return kiln_reluf(v);
    case KILN_ACT_SIGMOID: return kiln_sigmoidf(v);
    case KILN_ACT_TANH: return kiln_tanhf(v);
    case KILN_ACT_SOFTRELU: return kiln_softreluf(v);
    case KILN_ACT_SOFTSIGN: return kiln_softsignf(v);
    default: return v;
    }
}

#endif
