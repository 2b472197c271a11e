/* cf.h: control flow (MXNet's _foreach, _while_loop, _cond) and the fused RNN operator.
 *
 * A control-flow node keeps its bodies in the symbol file's "subgraphs": graph objects like the
 * file's own. Each body becomes a kiln_model of its own (is_body set): every variable is an
 * input, in node order, fed by the node through its *_locs attributes; it has its own shape
 * inference and memory plan (made while its node's shapes are inferred) and its own arena.
 * Running the node points the body's inputs at the node's memory (no copies: a data slice, the
 * current states, captured values) and copies the body's outputs where they belong.
 *
 *   _foreach     inputs data..., states..., others...; body -> step outputs..., new states...
 *                locs 0 in_data_locs, 1 in_state_locs, 2 remain_locs: the body input each
 *                node input feeds. Outputs: (T, ...) stacked step outputs, final states.
 *   _while_loop  bodies cond -> one value, func -> step outputs..., new loop variables...
 *                locs 0 cond_input_locs, 1 func_input_locs (the node input feeding each body
 *                input), 2 func_var_locs (the func input holding each loop variable).
 *                Outputs: (max_iterations, ...) stacked step outputs, rows past the last step
 *                zero (as kiln writes them; MXNet leaves them unspecified), final variables.
 *   _cond        bodies pred -> one value, then, else; locs 0 cond_input_locs,
 *                1 then_input_locs, 2 else_input_locs (node inputs feeding each body input).
 *
 * Bounds: bodies nest at most RT_MAX_SUBGRAPH_DEPTH deep; a run executes at most
 * kiln_model_set_max_loop_steps() bodies (every loop step, condition and branch counts), so a
 * hostile loop ends with KILN_ERR_LIMIT instead of hanging.
 */
#ifndef KILN_CF_H
#define KILN_CF_H

#include "graph.h"

#define RT_MAX_SUBGRAPH_DEPTH 8
#define RT_DEFAULT_MAX_LOOP_STEPS ((uint64_t)1 << 22)

enum { CF_DATA = 0, CF_STATE = 1, CF_REST = 2 };        /* _foreach's locs */
enum { CF_COND_IN = 0, CF_FUNC_IN = 1, CF_VAR = 2 };    /* _while_loop's */
enum { CF_PRED_IN = 0, CF_THEN_IN = 1, CF_ELSE_IN = 2 }; /* _cond's */

typedef struct rt_cf {
    int n_bodies;
    kiln_model *body[3];
    int64_t num_args, num_outputs, num_out_data, max_iterations;
    int n_locs[3];
    int *locs[3];
    int n_state;             /* foreach: states; while_loop: loop variables */
    int *var_input;          /* while_loop: the node input of each loop variable */
    int *var_of_input;       /* while_loop: per node input, its loop variable or -1 */
    const float **cur;       /* the states' current values while running (n_state) */
    /* plan */
    uint64_t *state_off;     /* each state's second buffer, in the node's workspace */
    uint64_t body_bytes;     /* the bodies' planned memory */
    uint64_t scratch_bytes;  /* the most kernel scratch a body needs */
    int gemm_scratch;
} rt_cf;

/* cf_graph.c */
/* The node's attributes (called by ops_parse; allocates n->cf). */
kiln_status cf_parse(rt_node *n, const jdoc *doc, const jval *attrs);
/* The node's bodies from raw["subgraphs"], and every loc checked against them and the node's
 * inputs (called by graph.c once the node's inputs are read). */
kiln_status cf_build(kiln_model *m, int node, const jdoc *doc, const jval *raw);
void cf_free(rt_node *n);
/* "body", "cond", "func", "pred", "then", "else" */
const char *cf_body_name(const rt_node *n, int k);

/* cf_exec.c */
/* Output shapes; each body's shapes and memory layout (infer.c calls it). */
kiln_status cf_infer(kiln_model *m, rt_node *n);
/* The node's workspace (the states' second buffers) and its bodies' scratch (plan.c). */
void cf_workspace(kiln_model *m, rt_node *n);
kiln_status cf_run(kiln_model *m, const rt_node *n);

/* rnn.c: MXNet's RNN operator (modes rnn_relu, rnn_tanh, lstm, gru; layers, directions) */
kiln_status rnn_infer(kiln_model *m, rt_node *n);
void rnn_workspace(kiln_model *m, rt_node *n);
void rnn_run(kiln_model *m, const rt_node *n);

#endif /* KILN_CF_H */
