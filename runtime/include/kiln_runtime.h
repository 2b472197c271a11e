/* kiln_runtime.h: run MXNet 1.x model files (kiln's `export()`, MXNet's `net.export`) from C.
 *
 * C99, no dependency beyond libc, libm and POSIX threads (through kiln's kernel library,
 * runtime/kernels). Inference only, float32 compute.
 *
 *   kiln_model *m;
 *   if (kiln_model_load_files("net-symbol.json", "net-0000.params", &m) != KILN_OK) {
 *       fprintf(stderr, "%s\n", kiln_last_error());
 *       return 1;
 *   }
 *   int64_t shape[4] = {1, 3, 224, 224};
 *   kiln_model_set_input(m, 0, image, shape, 4);      // copies; re-plans if the shape changed
 *   kiln_model_run(m);
 *   const float *y; const int64_t *yshape; int yndim;
 *   kiln_model_get_output(m, 0, &y, &yshape, &yndim); // valid until the next set_input/run
 *   kiln_model_free(m);
 *
 * Every function returns a kiln_status; on failure kiln_last_error() says what went wrong
 * (the file, the node and the problem). A model must not be used from two threads at once;
 * distinct models may (but the kernels share one thread pool, so their runs serialise there).
 *
 * ==========================================================================================
 * The files (see runtime/src/json.c, params.c and graph.c for the readers)
 * ==========================================================================================
 *
 * Symbol file (`*-symbol.json`): one JSON object (RFC 8259, UTF-8; nesting depth at most 64;
 * duplicate object keys rejected; numbers must fit an int64 where an integer is expected):
 *
 *   {"nodes": [ {"op": "null" | OPNAME, "name": STR, "attrs": {STR: STR, ...},
 *                "inputs": [[node_id, output_index, version], ...],
 *                "subgraphs": [GRAPH, ...]}, ... ],         (control-flow nodes only)
 *    "arg_nodes": [ids of the "null" nodes],          (checked when present)
 *    "node_row_ptr": [...],                           (ignored: recomputed)
 *    "heads": [[node_id, output_index, 0], ...],      (the model's outputs)
 *    "attrs": {"mxnet_version": ["int", 10901], "is_np_shape": ["int", 1]}}
 *
 * `attr` and `param` are accepted for `attrs` (older MXNet). Nodes must come in topological
 * order (each input's node id below its own: this also rules out cycles). Variables ("null"
 * nodes) that the params file holds are parameters; the others are the model's inputs, in
 * node order. Attribute values are strings as MXNet writes them: "True"/"False"/"1"/"0",
 * "256", "1e-05", "(3, 3)", "[1, 2]", "None".
 *
 * Control flow (MXNet 1.x `F.contrib.foreach/while_loop/cond`, kiln's `npx.*`): a `_foreach`,
 * `_while_loop` or `_cond` node holds its bodies in "subgraphs", graph objects like the file's
 * own ("nodes", "arg_nodes", "heads"; nested at most 8 deep). A body's inputs are all its
 * variables, in node order, fed by the node (never the params file); the *_locs attributes map
 * them to the node's inputs, and num_args is the node's inputs + the number of subgraphs:
 *   _foreach     subgraphs [body]; inputs data..., states..., others; in_data_locs,
 *                in_state_locs, remain_locs: the body input each takes. body -> num_out_data
 *                step outputs, then the new states. Runs over axis 0 of the data inputs;
 *                outputs: the step outputs stacked (T, ...), then the final states.
 *   _while_loop  subgraphs [cond, func]; cond_input_locs, func_input_locs: the node input
 *                feeding each body input; func_var_locs: the func input holding each loop
 *                variable; max_iterations. func -> num_out_data step outputs, then the new
 *                loop variables. Outputs: the step outputs stacked (max_iterations, ...), rows
 *                past the last step zero (as kiln computes them), then the final variables.
 *   _cond        subgraphs [pred, then, else]; cond_input_locs, then_input_locs,
 *                else_input_locs. Outputs: the branch's (both must give the same shapes).
 * A condition is one value; nonzero (NaN too) is true. States keep their shapes from step to
 * step. Every *_locs entry, count and shape is checked; an error names the node and the
 * subgraph. kiln_model_set_max_loop_steps bounds the work of one run.
 *
 * Params file (`*-NNNN.params`), little-endian:
 *
 *   u64 0x112 (magic), u64 0 (reserved), u64 N (arrays), N array records,
 *   u64 K (names: N, or 0 for an unnamed list), K x (u64 length, UTF-8 bytes).
 *
 *   array record: u32 magic: 0xF993FAC9 (V2) or 0xF993FACA (V3) then i32 storage type
 *                 (0 dense, 1 row_sparse, 2 csr); 0xF993FAC8 (V1, no storage type); any other
 *                 value is a pre-V1 record whose u32 is ndim, followed by ndim u32 dims.
 *     [sparse: storage shape]   shape: i32 ndim, ndim x i64 dims. V1/V2: ndim 0 = no array
 *                               (the record ends); V3: ndim -1 = none, 0 = a scalar.
 *     i32 device type, i32 device id, i32 type flag (0 f32, 1 f64, 2 f16, 3 u8, 4 i32, 5 i8,
 *     6 i64, 7 bool, 8 i16, 9 u16, 10 u32, 11 u64, 12 bf16)
 *     [sparse: per aux array (row_sparse: indices; csr: indptr, indices): i32 type, shape]
 *     data: itemsize x prod(shape) bytes, C order (sparse: values of the storage shape, then
 *     each aux array).
 *
 * Every dtype is read and converted to float32 (integers exactly up to 2^24); sparse records
 * are expanded to dense (bounded by the memory limit). Names lose an `arg:` / `aux:` prefix.
 * Duplicate names, names that are not UTF-8, truncation at any byte, trailing bytes, shapes
 * whose element count overflows or disagrees with the bytes present: all errors.
 *
 * Supported operators (legacy and numpy-mode names; attributes as MXNet 1.9.1 writes them):
 *   FullyConnected (_npx_fully_connected): num_hidden, no_bias, flatten
 *   Convolution (_npx_convolution): 1-D/2-D NCW/NCHW; kernel, stride, dilate, pad, num_filter,
 *       num_group, no_bias
 *   Pooling (_npx_pooling): 1-D/2-D; max/avg/sum, global_pool, kernel, stride, pad,
 *       pooling_convention valid/full, count_include_pad
 *   BatchNorm (_npx_batch_norm): inference with the running statistics; eps, fix_gamma, axis
 *   LayerNorm (_npx_layer_norm): axis, eps
 *   Activation (_npx_activation): relu, sigmoid, tanh, softrelu, softsign, log_sigmoid, mish
 *   LeakyReLU (_npx_leaky_relu): leaky, elu, selu, gelu, prelu, rrelu (its inference form)
 *   softmax, log_softmax (_npx_*): axis, temperature; SoftmaxActivation: instance/channel
 *   Dropout, BlockGrad, stop_gradient, _copy, identity, _np_copy, Cast/amp_cast to float32:
 *       identity
 *   Flatten, Reshape (codes 0 -1 -2 -3 -4, reverse), _np_reshape, _npx_reshape (codes -1..-6,
 *       reverse), expand_dims, squeeze, transpose, Concat/concat/_npi_concatenate,
 *       stack/_npi_stack
 *   sum, mean, max, min, prod (and _np_sum, _npi_mean, ...): axis, keepdims, exclude
 *   elementwise: unary math (exp, log, sqrt, abs, relu, sigmoid, tanh, ...), binary with NumPy
 *       broadcasting (broadcast_*, elemwise_*, _npi_add, ...), scalar forms (_plus_scalar,
 *       _npi_add_scalar, _rminus_scalar, ...), clip, add_n/ElementWiseSum,
 *       comparisons (0/1 as float32)
 *   Cast to float32/float64 is the identity, to float16 rounds to half precision, to an integer
 *       type truncates (values stay float32), to bool gives 0/1.
 *   dot (transpose_a/_b for inputs of at most 2 dimensions; a's last axis with b's first),
 *       _np_dot (b at most 2-D), slice/crop/_npi_slice (begin, end, step with None),
 *       slice_axis, reverse/_npi_flip, _zeros/_ones/_full (and _npi_*), zeros_like, ones_like
 *   RNN (_npx_rnn): MXNet's fused recurrent layer, modes rnn_relu, rnn_tanh, lstm (gates
 *       [i, f, c, o]), gru ([r, z, n]); num_layers, bidirectional, state_outputs, state_size;
 *       p (dropout) is ignored in inference; projection_size, lstm_state_clip_min/max and
 *       use_sequence_length=True are refused (KILN_ERR_UNSUPPORTED). Inputs data (T, N, C),
 *       the flat parameter vector (every layer's and direction's input then recurrent
 *       weights, then their biases, as _rnn_param_concat joins them), the state (and LSTM's
 *       cell state) (layers * directions, N, H); _rnn_param_concat (_npi_*) is a concat.
 *   _foreach, _while_loop, _cond: control flow, above.
 * See runtime/src/ops.c for the exact list of names. Outputs MXNet counts but does not compute
 * in inference (Dropout's mask, max Pooling's workspace, LayerNorm's mean/std) cannot be read;
 * BatchNorm's outputs 1 and 2 are its running mean and variance.
 *
 * Limits (each an error code and message when exceeded): tensors of at most 8 dimensions, every
 * dimension >= 1; 2^20 nodes per graph; JSON nesting 64 levels; control flow nested 8 deep;
 * kernel/stride/dilate/pad <= 65536; control-flow steps per run (kiln_model_set_max_loop_steps,
 * default 2^22); the memory limit (kiln_options.max_memory) over parameters, inputs,
 * intermediate values (control-flow bodies' included), workspaces and packed weights, checked
 * before allocating. Allocations inside the shared
 * kernels' worker threads (small, fixed-size scratch) are outside the runtime's control.
 *
 * Environment: KILN_MAX_MEMORY (default memory limit), KILN_MAX_LOOP_STEPS (default
 * control-flow steps per run), KILN_NUM_THREADS (kernel threads), KILN_RT_PROFILE=1 (each
 * node's time on stderr after every run; a control-flow node's time includes its bodies).
 */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_ARGUMENT = 1,    /* a NULL pointer, an index out of range, a bad shape argument */
    KILN_ERR_IO = 2,          /* a file cannot be opened or read */
    KILN_ERR_JSON = 3,        /* the symbol file is not valid JSON (or not UTF-8) */
    KILN_ERR_GRAPH = 4,       /* valid JSON, but not a valid graph (keys, ids, order) */
    KILN_ERR_UNSUPPORTED = 5, /* an operator or attribute value this runtime does not run */
    KILN_ERR_ATTRIBUTE = 6,   /* an attribute string that cannot be read */
    KILN_ERR_PARAMS = 7,      /* the params file is malformed */
    KILN_ERR_SHAPE = 8,       /* shapes that do not fit together */
    KILN_ERR_LIMIT = 9,       /* beyond a limit: memory, dimensions, nodes, nesting */
    KILN_ERR_NOMEM = 10,      /* an allocation failed */
    KILN_ERR_STATE = 11       /* e.g. run before every input was set */
} kiln_status;

typedef struct kiln_model kiln_model;

/* Load options; zero fields take the defaults. */
typedef struct kiln_options {
    /* Bytes the model may hold (parameters, inputs, intermediate buffers, workspace).
     * 0: $KILN_MAX_MEMORY if set (bytes, suffix k/m/g allowed), else 4 GiB. */
    uint64_t max_memory;
    /* Threads for the kernels (process-wide); 0 leaves the setting alone. */
    int num_threads;
} kiln_options;

/* Load a model from its two files. On failure *out is NULL. */
kiln_status kiln_model_load_files(const char *symbol_path, const char *params_path,
                                  kiln_model **out);

/* The same from memory (the buffers are copied or read, not kept). params may be NULL with
 * params_len 0 for a model without parameters. */
kiln_status kiln_model_load_memory(const char *json, size_t json_len, const void *params,
                                   size_t params_len, kiln_model **out);

/* Either of the above with options (opts may be NULL). */
kiln_status kiln_model_load_memory_opts(const char *json, size_t json_len, const void *params,
                                        size_t params_len, const kiln_options *opts,
                                        kiln_model **out);
kiln_status kiln_model_load_files_opts(const char *symbol_path, const char *params_path,
                                       const kiln_options *opts, kiln_model **out);

void kiln_model_free(kiln_model *model);

/* Inputs (the variables the params file does not hold) and outputs (the graph's heads). */
int kiln_model_num_inputs(const kiln_model *model);
int kiln_model_num_outputs(const kiln_model *model);
const char *kiln_model_input_name(const kiln_model *model, int index);   /* NULL if bad */
const char *kiln_model_output_name(const kiln_model *model, int index);  /* node name */
/* Index of the input called `name`, or -1. */
int kiln_model_input_index(const kiln_model *model, const char *name);

/* The shape of input `index` as last set (ndim 0 and dims NULL before any set_input), and
 * of output `index` after planning (after every input has been set). */
kiln_status kiln_model_input_shape(const kiln_model *model, int index, const int64_t **dims,
                                   int *ndim);
kiln_status kiln_model_output_shape(kiln_model *model, int index, const int64_t **dims,
                                    int *ndim);

/* Copy `data` (float32, C order, prod(dims) elements) into input `index`. A new shape
 * re-plans the model (shape inference, memory plan) at the next run. ndim 0..8, each
 * dimension >= 1. */
kiln_status kiln_model_set_input(kiln_model *model, int index, const float *data,
                                 const int64_t *dims, int ndim);

/* Compute the outputs from the inputs set. */
kiln_status kiln_model_run(kiln_model *model);

/* Output `index` of the last run: a pointer into the model's memory, valid until the next
 * set_input, run or free. */
kiln_status kiln_model_get_output(kiln_model *model, int index, const float **data,
                                  const int64_t **dims, int *ndim);

/* Bytes the model holds now (parameters + inputs + the planned arena, control-flow bodies
 * arenas included). */
uint64_t kiln_model_memory(const kiln_model *model);

/* The most control-flow steps one kiln_model_run may take: every body a _foreach or
 * _while_loop step runs, every while condition and every _cond branch counts one, nested
 * loops included. A run that would take more fails with KILN_ERR_LIMIT (a hostile file's loop
 * ends instead of hanging). 0 restores the default: $KILN_MAX_LOOP_STEPS, else 2^22. */
kiln_status kiln_model_set_max_loop_steps(kiln_model *model, uint64_t steps);

/* The message of the last failure in this thread ("" if none). */
const char *kiln_last_error(void);
/* A short name for a status ("KILN_ERR_PARAMS"). */
const char *kiln_status_name(kiln_status status);

#ifdef __cplusplus
}
#endif
#endif /* KILN_RUNTIME_H */
