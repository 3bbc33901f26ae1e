"""Compiled kernels of the native runtime: the event-driven front-end and the fused Mamba step.

Why numba: the work per 1 ms step is a few thousand scattered multiply-adds and a few
hundred thousand dense ones, so the cost that matters is the per-call overhead, and numpy or
torch pay microseconds per operator. numba compiles these loops to machine code at first
use, from wheels (no compiler at install time), works with numpy < 2, and keeps the kernels
readable Python; a hand-written C extension would need a compiler in `scripts/setup.sh` for
the same loops. Kernels are compiled with `cache=True`: the first use compiles them once
(about 20 s on the 2-core development machine under load), later processes load the cached
machine code from `__pycache__` (or `NUMBA_CACHE_DIR`) in well under a second. The front-end
kernels use no `fastmath`, so float32 operations are neither reassociated nor contracted into
fused multiply-adds: the membrane arithmetic rounds exactly as the torch reference does. Only
the backbone's matrix-vector products allow contraction (its logits are compared to 1e-5).

Front-end program (`frontend_step`). A NIR front-end is a chain of layers, each
`conv -> [pool] -> LIF [<- recurrent conv <- the same LIF, one step late]`. Every layer is
one row of `layer_table` (int64, `FIELDS` names its columns); weights live in one float32
blob laid out `(c_in, ky, kx, c_out)` so that a scatter writes contiguous output channels;
per-channel biases (already multiplied by the pooling window) in one float64 blob; all
neuron arrays (membrane, spikes, per-neuron beta / threshold / input scale) channels-last
`(H, W, C)` in flat arrays at a per-layer offset. Per step:

1. the input pixels whose count is non-zero are listed (graded counts kept as values);
2. per layer, every listed input scatters `value * w[c_in, ky, kx, :]` into the float64
   currents of the conv outputs it reaches, folded through the pooling window; the
   layer's previous spikes scatter through the recurrent conv (from the second step on);
3. each neuron's current is `float32(scattered + bias)` (float64 sums of float32 products
   are exact for these sizes, so the current is the correctly rounded real value), then the
   LIF runs in float32 with the reference's operation order (`beta * v + I`, then the reset)
   and lists its spikes for the next layer.

The membrane arithmetic is therefore bit-identical to the torch reference; the currents can
differ from torch's float32 convolution in the last bit (it accumulates in float32 in its
own order), which flips a spike only where a membrane lands within an ulp of the threshold
(the parity tests measure zero flips on their samples; the benchmark reports the rate).

Backbone (`mamba_layer_step`, `backbone_step`). The layer kernel is the Mamba-1 step of
FAMILIES.md §0 for any family: `in_proj` (optional bias) -> depthwise causal conv (optional
bias) -> silu -> `x_proj` -> `dt_proj` + softplus -> selective state update -> output gate
-> `out_proj` (optional bias). `gate` is a parameter: `GATE_SILU` (official, y * silu(z)),
`GATE_NONE` (y = C.h + D.u, no z) and `GATE_NORM_SILU` (LayerNorm(d_inner)(y) * silu(z), the
liquid family). Matrix-vector products are written as sums of weight rows (`out +=
w_t[j] * x[j]`, weights stored transposed) so the inner loop runs over contiguous outputs
and vectorises without reassociating any sum.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# -- front-end layer table ---------------------------------------------------------------
FIELDS = (
    "in_c", "in_h", "in_w",             # the layer's input (the previous layer's spikes or the frame)
    "conv_h", "conv_w",                 # conv output size (before pooling)
    "kh", "kw", "sh", "sw", "ph", "pw",  # conv kernel, stride, padding
    "w_off",                            # conv weights in the float32 blob, (c_in, kh, kw, c_out)
    "pool", "pkh", "pkw", "psh", "psw",  # pooling: 0 none, 1 sum, 2 avg; kernel, stride
    "out_c", "out_h", "out_w",          # the LIF layer's shape
    "n_off",                            # neuron offset (membranes, spikes, currents, parameters)
    "ff_bias_off",                      # float64 blob: per-channel feed-forward bias (pool-folded)
    "rec", "rkh", "rkw", "rph", "rpw", "rw_off", "rec_bias_off",  # recurrent conv (0/1) of this layer
    "reset", "timing",                  # reset 0 subtract 1 zero 2 none; timing 0 delayed 1 immediate
    "fold", "fold_off", "fdy0", "fdx0", "fny", "fnx",  # conv+pool folded per input phase (see compile_frontend)
)
F = {name: i for i, name in enumerate(FIELDS)}
RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}
TIMING_CODES = {"delayed": 0, "immediate": 1}
POOL_CODES = {None: 0, "sum": 1, "avg": 2}

GATE_SILU, GATE_NONE, GATE_NORM_SILU = 0, 1, 2


@njit(cache=True, inline="always")
def _add_scaled(target, value, source):
    """target += value * source over one run of output channels. On slices (fresh array views)
    LLVM vectorises this loop; indexing the whole arrays at an offset it did not (5x slower)."""
    for co in range(target.shape[0]):
        target[co] += value * source[co]


@njit(cache=True, inline="always")
def _scatter(acc, n_off, out_h, out_w, out_c, c, y, x, value, weights, w_off, kh, kw, sh, sw, ph, pw,
             conv_h, conv_w, pool, pkh, pkw, psh, psw):
    """One input (c, y, x) with `value` -> the float64 currents of every output it reaches."""
    for ky in range(kh):
        ny = y + ph - ky
        if ny < 0:
            continue
        if sh == 1:  # no integer division on the common path
            oy = ny
        elif ny % sh != 0:
            continue
        else:
            oy = ny // sh
        if oy >= conv_h:
            continue
        for kx in range(kw):
            nx = x + pw - kx
            if nx < 0:
                continue
            if sw == 1:
                ox = nx
            elif nx % sw != 0:
                continue
            else:
                ox = nx // sw
            if ox >= conv_w:
                continue
            wbase = w_off + ((c * kh + ky) * kw + kx) * out_c
            if pool == 0:
                base = n_off + (oy * out_w + ox) * out_c
                _add_scaled(acc[base:base + out_c], value, weights[wbase:wbase + out_c])
                continue
            scaled = value / (pkh * pkw) if pool == 2 else value
            # pooled rows py with py*psh <= oy < py*psh + pkh (floor pooling: py < out_h)
            py_lo = max(0, (oy - pkh + psh) // psh)
            py_hi = min(out_h - 1, oy // psh)
            px_lo = max(0, (ox - pkw + psw) // psw)
            px_hi = min(out_w - 1, ox // psw)
            for py in range(py_lo, py_hi + 1):
                for px in range(px_lo, px_hi + 1):
                    base = n_off + (py * out_w + px) * out_c
                    _add_scaled(acc[base:base + out_c], scaled, weights[wbase:wbase + out_c])


@njit(cache=True, inline="always")
def _scatter_folded(acc, n_off, out_h, out_w, out_c, c, y, x, value, folded, reach, fold_off, psh, psw,
                    fdy0, fdx0, fny, fnx):
    """The same scatter through conv and a non-overlapping pool pre-summed per input phase:
    each input reaches at most 4 pooled outputs of a 3x3 conv + 2x2 pool, instead of 9 conv outputs."""
    qy, ry = y // psh, y % psh
    qx, rx = x // psw, x % psw
    phase = ((c * psh + ry) * psw + rx) * fny
    for iy in range(fny):
        py = qy + fdy0 + iy
        if py < 0 or py >= out_h:
            continue
        for ix in range(fnx):
            px = qx + fdx0 + ix
            if px < 0 or px >= out_w:
                continue
            entry = (phase + iy) * fnx + ix
            if not reach[entry]:
                continue
            wbase = fold_off + entry * out_c
            base = n_off + (py * out_w + px) * out_c
            _add_scaled(acc[base:base + out_c], value, folded[wbase:wbase + out_c])


@njit(cache=True)
def _lif_layer(acc, ff_bias, rec_bias, rec_on, input_scale, beta, threshold, v, s, spike_list, n_off, n_pos, out_c,
               zd, md, zi, mi):
    """One LIF layer of one stream: update every neuron, then list the ones that spiked (as flat
    indices + n_off). Every array is this layer's slice (on slices LLVM vectorises the loop)."""
    one = np.float32(1.0)
    for pos in range(n_pos):
        base = pos * out_c
        for c in range(out_c):
            i = base + c
            total = (acc[i] + ff_bias[c]) + rec_on * rec_bias[c]
            acc[i] = 0.0
            current = np.float32(total) * input_scale[i]
            s_prev = s[i]
            thr = threshold[i]
            vv = (beta[i] * (one - zd * s_prev)) * v[i] + current - (md * s_prev) * thr
            spike = np.float32(vv > thr)
            vv = vv - (mi * spike) * thr
            v[i] = vv * (one - zi * spike)
            s[i] = spike
    n_new = 0
    for i in range(n_pos * out_c):
        if s[i] != 0.0:
            spike_list[n_new] = n_off + i
            n_new += 1
    return n_new


@njit(cache=True)
def frontend_step(frame, table, weights, folded, reach, biases, beta, threshold, input_scale, v, s, spike_list,
                  n_spikes, acc, in_list, steps, counts, out):
    """One time step of a batch of streams.

    frame (B, C, H, W) float32 event counts; v, s (B, neurons) float32 membranes and spikes;
    spike_list (B, neurons) int32 flat indices of each layer's spikes (at the layer's
    offset), n_spikes (B, layers) their number; acc (neurons,) float64 scratch; in_list
    (C*H*W, 4) float64 scratch; steps (B,) int64; counts (B, layers) int64 spikes since
    reset; out (B, C, H, W) float32 the last layer's spikes.
    """
    batch, in_c, in_h, in_w = frame.shape
    n_layers = table.shape[0]
    for b in range(batch):
        # 1. the active input pixels (graded counts)
        n_in = 0
        for c in range(in_c):
            for y in range(in_h):
                for x in range(in_w):
                    value = frame[b, c, y, x]
                    if value != 0.0:
                        in_list[n_in, 0] = c
                        in_list[n_in, 1] = y
                        in_list[n_in, 2] = x
                        in_list[n_in, 3] = value
                        n_in += 1
        for layer in range(n_layers):
            t = table[layer]
            out_c, out_h, out_w, n_off = t[17], t[18], t[19], t[20]
            # (the currents are zero here: the LIF loop below clears each one it reads)
            # 2a. feed-forward: the listed inputs of this step
            if layer == 0 and t[31] == 1:
                for k in range(n_in):
                    _scatter_folded(acc, n_off, out_h, out_w, out_c, int(in_list[k, 0]), int(in_list[k, 1]),
                                    int(in_list[k, 2]), in_list[k, 3], folded, reach, t[32], t[15], t[16], t[33],
                                    t[34], t[35], t[36])
            elif layer == 0:
                for k in range(n_in):
                    _scatter(acc, n_off, out_h, out_w, out_c, int(in_list[k, 0]), int(in_list[k, 1]),
                             int(in_list[k, 2]), in_list[k, 3], weights, t[11], t[5], t[6], t[7], t[8], t[9],
                             t[10], t[3], t[4], t[12], t[13], t[14], t[15], t[16])
            else:
                p = table[layer - 1]
                p_c, p_w, p_off = p[17], p[19], p[20]
                for k in range(n_spikes[b, layer - 1]):
                    flat = spike_list[b, p_off + k] - p_off
                    pos = flat // p_c
                    c = flat - pos * p_c
                    y = pos // p_w
                    x = pos - y * p_w
                    if t[31] == 1:
                        _scatter_folded(acc, n_off, out_h, out_w, out_c, c, y, x, 1.0, folded, reach, t[32], t[15],
                                        t[16], t[33], t[34], t[35], t[36])
                        continue
                    _scatter(acc, n_off, out_h, out_w, out_c, c, y, x, 1.0, weights, t[11], t[5], t[6], t[7],
                             t[8], t[9], t[10], t[3], t[4], t[12], t[13], t[14], t[15], t[16])
            # 2b. recurrence: the previous step's spikes of this layer (none before step 1)
            rec_active = t[22] == 1 and steps[b] > 0
            if rec_active:
                for k in range(n_spikes[b, layer]):
                    flat = spike_list[b, n_off + k] - n_off
                    pos = flat // out_c
                    c = flat - pos * out_c
                    y = pos // out_w
                    x = pos - y * out_w
                    _scatter(acc, n_off, out_h, out_w, out_c, c, y, x, 1.0, weights, t[27], t[23], t[24], 1, 1,
                             t[25], t[26], out_h, out_w, 0, 1, 1, 1, 1)
            # 3. LIF, float32, the reference's operation order. Every variant is one branch-free
            # formula whose unused terms are exact identities (x * 1, x - 0):
            #   v = (beta * (1 - zd*s_prev)) * v_prev + I - (md*s_prev) * thr   (delayed zero / subtract)
            #   s = v > thr;  v = v - (mi*s) * thr;  v = v * (1 - zi*s)          (immediate subtract / zero)
            reset, timing = t[29], t[30]
            one = np.float32(1.0)
            zd = one if timing == 0 and reset == 1 else np.float32(0.0)
            md = one if timing == 0 and reset == 0 else np.float32(0.0)
            zi = one if timing == 1 and reset == 1 else np.float32(0.0)
            mi = one if timing == 1 and reset == 0 else np.float32(0.0)
            ff_bias, rec_bias = t[21], t[28]
            rec_on = 1.0 if rec_active else 0.0
            end = n_off + out_c * out_h * out_w
            n_new = _lif_layer(acc[n_off:end], biases[ff_bias:ff_bias + out_c], biases[rec_bias:rec_bias + out_c],
                               rec_on, input_scale[n_off:end], beta[n_off:end], threshold[n_off:end],
                               v[b, n_off:end], s[b, n_off:end], spike_list[b, n_off:end], n_off, out_h * out_w,
                               out_c, zd, md, zi, mi)
            n_spikes[b, layer] = n_new
            counts[b, layer] += n_new
        steps[b] += 1
        # the last layer's spikes, (C, H, W) order
        last = table[n_layers - 1]
        l_c, l_w, l_off = last[17], last[19], last[20]
        out[b, :, :, :] = 0.0
        for k in range(n_spikes[b, n_layers - 1]):
            flat = spike_list[b, l_off + k] - l_off
            out[b, flat % l_c, flat // l_c // l_w, flat // l_c % l_w] = 1.0


# -- Mamba layer step ---------------------------------------------------------------------
@njit(cache=True, inline="always")
def _softplus(x):
    # torch.nn.functional.softplus: beta 1, threshold 20 (linear above)
    if x > np.float32(20.0):
        return x
    return np.log1p(np.exp(x))


@njit(cache=True)
def _exp_inplace(values, exponent_bits):
    """values[j] = exp(values[j]) in float32, for a whole vector at once.

    libm's expf is a call per element (about 25 ns here; a step at the N-MNIST sizes needs
    19k of them); this is Cody-Waite range reduction, a degree-7 Taylor polynomial on
    |r| <= ln2/2 and 2^k written into the exponent bits: plain float32 arithmetic that
    vectorises (measured within 1.3 ulp of the exact exponential, as close as torch's own
    float32 exp). Arguments are clamped to [-87, 88], the normal float32 range: below, the
    result only ever scales a state towards zero; above, it only ever divides one by
    1 + exp (silu of a very negative number), which stays 0 to float32 precision.
    """
    n = values.shape[0]
    for j in range(n):
        v = min(max(values[j], np.float32(-87.0)), np.float32(88.0))
        k = np.floor(v * np.float32(1.4426950408889634) + np.float32(0.5))
        r = (v - k * np.float32(0.693359375)) - k * np.float32(-2.12194440e-4)
        values[j] = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (np.float32(1 / 6) + r * (
            np.float32(1 / 24) + r * (np.float32(1 / 120) + r * (np.float32(1 / 720) + r * np.float32(1 / 5040)))))))
        exponent_bits[j] = (np.int32(k) + 127) << 23
    scale = exponent_bits[:n].view(np.float32)
    for j in range(n):
        values[j] *= scale[j]


@njit(cache=True)
def _exp_of_products(delta, A, out, exponent_bits):
    """out[i*N + n] = exp(float32(delta[i] * A[i, n])) for the whole (Di, N) block (`_exp_inplace`)."""
    d_inner, d_state = A.shape
    for i in range(d_inner):
        a_row, o_row, di = A[i], out[i * d_state:(i + 1) * d_state], delta[i]
        for n in range(d_state):
            o_row[n] = di * a_row[n]  # the float32 product, as the reference rounds it
    _exp_inplace(out, exponent_bits)


@njit(cache=True)
def _silu_inplace(values, tmp, exponent_bits):
    """values = values * sigmoid(values) = values / (1 + exp(-values)), vectorised."""
    n = values.shape[0]
    for j in range(n):
        tmp[j] = -values[j]
    _exp_inplace(tmp[:n], exponent_bits)
    for j in range(n):
        values[j] = values[j] / (np.float32(1.0) + tmp[j])


@njit(cache=True, fastmath={"contract"})
def _matvec_t(w_t, x, out):
    """out = w_t.T @ x with w_t (n_in, n_out) contiguous: a sum of rows, vectorised over outputs."""
    n_in, n_out = w_t.shape
    for i in range(n_out):
        out[i] = 0.0
    for j in range(n_in):
        xj = x[j]
        if xj == 0.0:
            continue
        row = w_t[j]  # a row slice: LLVM vectorises the loop over it
        for i in range(n_out):
            out[i] += row[i] * xj


@njit(cache=True)
def _layer_norm(x, weight, bias, eps, out):
    """LayerNorm over the last axis in float64 (mean, biased variance), written as float32."""
    n = x.shape[0]
    mean = 0.0
    for i in range(n):
        mean += x[i]
    mean /= n
    var = 0.0
    for i in range(n):
        d = x[i] - mean
        var += d * d
    var /= n
    inv = 1.0 / np.sqrt(var + eps)
    for i in range(n):
        out[i] = np.float32((x[i] - mean) * inv * weight[i] + bias[i])


@njit(cache=True)
def mamba_layer_kernel(x, in_w_t, in_b, conv_w, conv_b, x_proj_w_t, dt_w_t, dt_b, A, D, out_w_t, out_b,
                       gate, gate_norm_w, gate_norm_b, gate_norm_eps, conv_state, ssm_state, scratch, exp_scratch,
                       y_out):
    """One token through one Mamba layer; conv_state (Di, K) and ssm_state (Di, N) updated in place.

    x (d,) -> y_out (d,). Absent biases are arrays of length 0. `scratch` is float32 of at
    least 6*Di + R + 2N, `exp_scratch` float32 of 2*Di*N.
    """
    d_inner, d_conv = conv_w.shape
    d_state = A.shape[1]
    dt_rank = dt_w_t.shape[0]
    n_in_proj = in_w_t.shape[1]
    xz = scratch[:n_in_proj]
    u = scratch[2 * d_inner:3 * d_inner]
    dbl = scratch[3 * d_inner:3 * d_inner + dt_rank + 2 * d_state]
    delta = scratch[3 * d_inner + dt_rank + 2 * d_state:4 * d_inner + dt_rank + 2 * d_state]
    y = scratch[4 * d_inner + dt_rank + 2 * d_state:5 * d_inner + dt_rank + 2 * d_state]
    normed = scratch[5 * d_inner + dt_rank + 2 * d_state:6 * d_inner + dt_rank + 2 * d_state]
    _matvec_t(in_w_t, x, xz)
    if in_b.shape[0] > 0:
        for i in range(n_in_proj):
            xz[i] += in_b[i]
    # depthwise causal conv over the last K raw x (oldest first), then silu
    for i in range(d_inner):
        state_row, w_row = conv_state[i], conv_w[i]
        for k in range(d_conv - 1):
            state_row[k] = state_row[k + 1]
        state_row[d_conv - 1] = xz[i]
        c = np.float32(0.0)
        for k in range(d_conv):
            c += state_row[k] * w_row[k]
        if conv_b.shape[0] > 0:
            c += conv_b[i]
        u[i] = c
    exp_tmp = exp_scratch[:d_inner]
    exp_bits = exp_scratch[d_inner:2 * d_inner].view(np.int32)
    _silu_inplace(u, exp_tmp, exp_bits)
    _matvec_t(x_proj_w_t, u, dbl)
    _matvec_t(dt_w_t, dbl[:dt_rank], delta)
    for i in range(d_inner):
        delta[i] = _softplus(delta[i] + dt_b[i])
    decay = exp_scratch[:d_inner * d_state]
    _exp_of_products(delta, A, decay, exp_scratch[d_inner * d_state:].view(np.int32))
    B = dbl[dt_rank:dt_rank + d_state]
    C = dbl[dt_rank + d_state:dt_rank + 2 * d_state]
    for i in range(d_inner):
        dt_u = delta[i] * u[i]
        h_row, d_row = ssm_state[i], decay[i * d_state:(i + 1) * d_state]
        for n in range(d_state):  # row slices: vectorised
            h_row[n] = h_row[n] * d_row[n] + dt_u * B[n]
        # <h, C> with four partial sums (a dependency chain of d_state adds otherwise)
        acc0 = acc1 = acc2 = acc3 = np.float32(0.0)
        n = 0
        while n + 4 <= d_state:
            acc0 += h_row[n] * C[n]
            acc1 += h_row[n + 1] * C[n + 1]
            acc2 += h_row[n + 2] * C[n + 2]
            acc3 += h_row[n + 3] * C[n + 3]
            n += 4
        while n < d_state:
            acc0 += h_row[n] * C[n]
            n += 1
        y[i] = ((acc0 + acc1) + (acc2 + acc3)) + u[i] * D[i]
    if gate != GATE_NONE:
        z = xz[d_inner:2 * d_inner]
        _silu_inplace(z, exp_tmp, exp_bits)  # z is not needed after the gate
        if gate == GATE_NORM_SILU:
            _layer_norm(y, gate_norm_w, gate_norm_b, gate_norm_eps, normed)
            for i in range(d_inner):
                y[i] = normed[i] * z[i]
        else:
            for i in range(d_inner):
                y[i] = y[i] * z[i]
    _matvec_t(out_w_t, y, y_out)
    if out_b.shape[0] > 0:
        for i in range(y_out.shape[0]):
            y_out[i] += out_b[i]


# -- the fused Mamba-Spike backbone step ---------------------------------------------------
@njit(cache=True)
def backbone_step(spikes, real, window, lookahead, ring, ring_list, ring_n, head_ref, ring_sum, counters,
                  proj_w_t, proj_b, norm_w, norm_b, in_w_t, conv_w, x_proj_w_t, dt_w_t, dt_b, A, D, out_w_t,
                  final_norm_w, final_norm_b, cls_w_t, cls_b, no_bias, conv_state, ssm_state, feature_sum,
                  scratch, exp_scratch, new_list, acc, hidden, normed, layer_out, logits):
    """One push of flattened spikes (B, F) through interface, Mamba layers and head.

    ring (B, window-1, F) holds the previous frames, slot `head_ref[0]` the oldest;
    ring_list / ring_n their non-zero features; ring_sum (B, d_model) float64 the input
    projection's weight columns summed over the ring, `sum_f ring[., f] * W[:, f]`, kept
    sliding: each push adds the new frame's columns and takes the oldest frame's away, so a
    step gathers twice the spikes of one frame instead of every feature active in the window.
    The products are exact in float64; the running sum rounds at 2^-53 of its size per
    update (at most about 1e-10 of a logit over a 10^6-step sample; `reset` starts it at 0).
    counters = [count, received, pushed] (shared by the batch, as in BackboneState); new_list
    (F,) int32 scratch. Layer weights are stacked on a leading layer axis. logits (B, classes)
    receives the anytime logits.
    """
    batch, n_features = spikes.shape
    n_layers = in_w_t.shape[0]
    d_model = proj_b.shape[0]
    slots = window - 1
    head = head_ref[0]
    counters[2] += 1
    if real:
        counters[1] += 1
    advance = counters[2] > lookahead
    for b in range(batch):
        n_new = 0
        for f in range(n_features):
            if spikes[b, f] != 0.0:
                new_list[n_new] = f
                n_new += 1
        # interface + input projection: the new frame's weight columns, plus the ring's sum
        for d in range(d_model):
            acc[d] = 0.0
        for k in range(n_new):
            f = new_list[k]
            value = np.float64(spikes[b, f])
            column = proj_w_t[f]
            for d in range(d_model):
                acc[d] += value * column[d]
        if advance:
            for d in range(d_model):
                hidden[d] = np.float32((ring_sum[b, d] + acc[d]) / window + proj_b[d])
            for layer in range(n_layers):
                _layer_norm(hidden, norm_w[layer], norm_b[layer], 1e-5, normed)
                mamba_layer_kernel(normed, in_w_t[layer], no_bias, conv_w[layer], no_bias, x_proj_w_t[layer],
                                   dt_w_t[layer], dt_b[layer], A[layer], D[layer], out_w_t[layer], no_bias,
                                   GATE_SILU, no_bias, no_bias, 1e-5, conv_state[layer, b], ssm_state[layer, b],
                                   scratch, exp_scratch, layer_out)
                for d in range(d_model):
                    hidden[d] = hidden[d] + layer_out[d]
            for d in range(d_model):
                feature_sum[b, d] = feature_sum[b, d] + hidden[d]
        # the new frame replaces the oldest slot: the sum gains its columns and loses the oldest
        # frame's; clear that slot's entries, write the new ones
        if slots > 0:
            sums = ring_sum[b]
            for d in range(d_model):
                sums[d] += acc[d]
            for k in range(ring_n[b, head]):
                f = ring_list[b, head, k]
                value = np.float64(ring[b, head, f])
                column = proj_w_t[f]
                for d in range(d_model):
                    sums[d] -= value * column[d]
                ring[b, head, f] = 0.0
            for k in range(n_new):
                f = new_list[k]
                ring[b, head, f] = spikes[b, f]
                ring_list[b, head, k] = f
            ring_n[b, head] = n_new
    if advance:
        counters[0] += 1
    if slots > 0:
        head_ref[0] = (head + 1) % slots
    divisor = np.float32(max(counters[0], 1))
    for b in range(batch):
        for d in range(d_model):
            hidden[d] = feature_sum[b, d] / divisor
        _layer_norm(hidden, final_norm_w, final_norm_b, 1e-5, normed)
        _matvec_t(cls_w_t, normed, logits[b])
        for k in range(logits.shape[1]):
            logits[b, k] += cls_b[k]
