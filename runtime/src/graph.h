/* graph.h: the runtime's graph (nodes and values), the model object, and the op kinds.
 *
 * A node is one MXNet node; each of its outputs is a value. Values are numbered node by node
 * (out0 .. out0 + n_out - 1), variables have one. Parameters point into the params file's
 * arrays, inputs into buffers the model owns, every other value into the arena (plan.c) or,
 * for ops that only change the shape (reshape, flatten, identity ...), into its input's memory.
 */
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include "rt.h"

enum rt_op {
    OP_VAR,
    OP_FC,
    OP_CONV,
    OP_POOL,
    OP_BN,
    OP_LN,
    OP_ACT,        /* Activation: parsed into OP_UNARY with its act_type */
    OP_LEAKY,      /* sub: enum rt_leaky */
    OP_SOFTMAX,    /* sub: 0 softmax, 1 log_softmax, 2 SoftmaxActivation */
    OP_IDENTITY,   /* Dropout, BlockGrad, _copy, Cast to float ...: an alias */
    OP_FLATTEN,    /* alias */
    OP_RESHAPE,    /* alias; sub: enum rt_reshape_kind */
    OP_EXPAND_DIMS,/* alias */
    OP_SQUEEZE,    /* alias */
    OP_TRANSPOSE,
    OP_CONCAT,     /* sub 1: stack */
    OP_REDUCE,     /* sub: enum rt_reduce */
    OP_UNARY,      /* sub: enum rt_unary */
    OP_BINARY,     /* sub: enum rt_binary */
    OP_SCALAR,     /* sub: enum rt_binary; reversed operands in a.scalar.rev */
    OP_CLIP,
    OP_ADDN,
    OP_FILL,       /* _zeros, _ones, _full (no inputs; sub 0) and zeros_like ... (sub 1) */
    OP_DOT,        /* dot, _np_dot (sub 1) */
    OP_FLIP,       /* reverse, _npi_flip */
    OP_SLICE,      /* slice, crop, _npi_slice, slice_axis (sub 1) */
    OP_RNN,        /* MXNet's fused RNN: rnn.c */
    OP_FOREACH,    /* control flow, with bodies in rt_node.cf: cf.h */
    OP_WHILE,
    OP_COND,
    OP_COUNT
};

enum rt_reshape_kind { RESHAPE_LEGACY, RESHAPE_NP, RESHAPE_NPX };
enum rt_reduce { RED_SUM, RED_MEAN, RED_MAX, RED_MIN, RED_PROD };
enum rt_leaky { LEAKY_LEAKY, LEAKY_ELU, LEAKY_SELU, LEAKY_GELU, LEAKY_PRELU, LEAKY_RRELU };

enum rt_rnn_mode { RNN_RELU, RNN_TANH, RNN_LSTM, RNN_GRU };

#define RT_MAX_CODES 16

struct rt_cf;

typedef struct rt_node {
    const char *name, *opname;
    int op, sub;
    int n_in, *in;          /* value ids */
    int n_out, out0;        /* this node's values: out0 .. out0 + n_out - 1 */
    union {
        struct { int64_t num_hidden; int no_bias, flatten; } fc;
        struct {
            int nd;
            int64_t kernel[2], stride[2], dilate[2], pad[2], num_filter, num_group;
            int no_bias;
        } conv;
        struct {
            int nd, type, global, full, count_include_pad;
            int64_t kernel[2], stride[2], pad[2];
        } pool;
        struct { double eps; int fix_gamma; int64_t axis; } bn;
        struct { double eps; int64_t axis; } ln;
        struct { int64_t axis; double temperature; } softmax;
        struct { double slope; } leaky;
        struct { int n, reverse; int64_t codes[RT_MAX_CODES]; } reshape;
        struct { int n; int64_t axes[RT_MAX_DIMS]; } transpose; /* n 0: reverse */
        struct { int64_t axis; int flat; } concat;              /* flat: axis None */
        struct { int64_t axis; } expand;
        struct { int n; int64_t axes[RT_MAX_DIMS]; } squeeze;   /* n 0: every 1 */
        struct { int n, all, keepdims, exclude; int64_t axes[RT_MAX_DIMS]; } reduce;
        struct { double value; int rev; } scalar;
        struct { double lo, hi; } clip;
        struct { double value; rt_shape shape; } fill;
        struct { int ta, tb; } dot;
        struct { int n; int64_t axes[RT_MAX_DIMS]; } flip;
        /* INT64_MIN: None. slice_axis: n 1 and the axis in `axis` */
        struct {
            int n;
            int64_t axis, begin[RT_MAX_DIMS], end[RT_MAX_DIMS], step[RT_MAX_DIMS];
        } slice;
        struct { int mode, layers, dirs, state_outputs; int64_t state_size; } rnn;
    } a;
    struct rt_cf *cf;       /* control flow: attributes and bodies (cf_graph.c), else NULL */
    /* set by plan.c */
    int skip;               /* nothing to run: fused into another node, or an alias */
    int out;                /* the value this node's main output is written to */
    int act;                /* fused activation (enum kiln_act) */
    int residual;           /* value added before the activation (convolution), or -1 */
    float *fold;            /* convolution with a folded BatchNorm: scale[f], shift[f] */
    float *packed;          /* convolution: weights packed for rtk_conv2d_f32 (conv_packed.c) */
    uint64_t packed_bytes;
    uint64_t ws_bytes, ws_off;
} rt_node;

enum { VAL_PARAM, VAL_INPUT, VAL_TEMP };

typedef struct rt_value {
    rt_shape shape;
    int node;               /* producer */
    int kind;
    int alias;              /* shares this value's memory (reshape-like ops), or -1 */
    int hidden;             /* an output the runtime does not compute (masks, workspaces) */
    int uses;               /* readers: node inputs and graph outputs */
    int input;              /* VAL_INPUT: its input index */
    const rt_param *param;  /* VAL_PARAM */
    float *data;            /* resolved by plan.c */
    /* plan.c: storage */
    int first, last;        /* node indices of definition and last use */
    uint64_t off;           /* arena offset (roots of VAL_TEMP) */
} rt_value;

struct kiln_model {
    rt_params params;
    char *strings;          /* names and op names (the JSON string buffer) */
    int n_nodes, n_values;
    rt_node *nodes;
    rt_value *values;
    int *in_pool;           /* the nodes' input lists */
    int n_inputs, *inputs;  /* value ids of the data inputs */
    float **input_data;
    rt_shape *input_shape;
    int *input_set;
    int n_heads, *heads;
    uint64_t max_memory;
    uint64_t input_bytes, fold_bytes;
    uint64_t scratch_bytes; /* kernel scratch (kiln_scratch slot 2) the plan needs */
    int gemm_scratch;       /* the plan uses the kernels' blocked GEMM (scratch slots 0, 1) */
    int *consumer;          /* plan.c: per value, its (last seen) reading node */
    int planned;            /* shapes inferred and memory placed for the inputs' shapes */
    int ran;                /* outputs hold the last run's results */
    void *arena;
    uint64_t arena_bytes;
    /* control flow: a body (a node's subgraph) is a model of its own, planned and run by its
     * node (cf_graph.c, cf_exec.c); its inputs point at memory its node owns or reads */
    int is_body, depth;      /* depth: 0 for the file's graph, 1 for its nodes' bodies ... */
    struct kiln_model *root; /* the file's graph (itself at the root) */
    uint64_t sub_bytes;      /* planned memory of every body inside (arenas, nested bodies) */
    uint64_t max_loop_steps; /* root: body runs allowed per kiln_model_run */
    uint64_t loop_steps;     /* root: body runs so far in this run */
};

/* ops.c */
/* Find an MXNet op name: sets *op and *sub; -1 if unknown. */
int ops_lookup(const char *name, int *op, int *sub);
/* Outputs MXNet counts for the node (hidden ones included), after its attrs are parsed. */
int ops_num_outputs(const rt_node *n);
/* Parse the node's attributes (attrs may be NULL: none). */
kiln_status ops_parse(rt_node *n, const jdoc *doc, const jval *attrs);
/* Inputs the op needs beyond the data (e.g. FullyConnected: weight and, unless no_bias, bias);
 * is_param[i] says input i must be a parameter (missing ones are then reported by name). */
int ops_param_input(const rt_node *n, int i);
/* Number of inputs the node must have: [*lo, *hi]. */
void ops_arity(const rt_node *n, int *lo, int *hi);
int ops_is_alias(const rt_node *n);

/* Outputs 1.. of the node that hold computed values in the arena (not hidden, not aliases):
 * control flow and RNN states. */
int ops_extra_outputs(const rt_node *n);

/* graph.c */
kiln_status graph_build(kiln_model *m, const jdoc *doc);
/* The same for the graph object `root` of doc (a control-flow body). */
kiln_status graph_build_at(kiln_model *m, const jdoc *doc, const jval *root);

/* infer.c: every value's shape from the inputs' */
kiln_status infer_shapes(kiln_model *m);

/* plan.c: fusion, liveness and the arena */
kiln_status plan_model(kiln_model *m);
void plan_release(kiln_model *m);
/* plan_model in two steps, for bodies: shapes, fusion and placement (nothing allocated:
 * the root checks the memory of everything first), then the arenas, bodies' included. */
kiln_status plan_layout(kiln_model *m);
kiln_status plan_alloc(kiln_model *m);
/* Every value's address from the inputs' (input_data) and the arena: after a body's inputs
 * were pointed elsewhere. */
void plan_bind(kiln_model *m);

/* exec.c */
kiln_status exec_model(kiln_model *m);
struct kiln_conv2d;
/* The kernels' geometry of a convolution node (one image), after shape inference. */
void rt_conv_geometry(const kiln_model *m, const rt_node *n, struct kiln_conv2d *p);

/* slice (infer.c): the first element's offset, each axis's stride (elements of the input,
 * negative for a negative step) and the result's shape; an error for an empty result */
kiln_status rt_slice_ranges(const rt_node *n, const rt_shape *x, int64_t *offset,
                            int64_t *stride, rt_shape *y);

/* "node 12 ('conv0_fwd', Convolution)" */
const char *node_desc(const kiln_model *m, int node);

#endif /* KILN_GRAPH_H */
