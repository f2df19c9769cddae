"""The Triton kernels of :mod:`pixelrnn.layers.scan_triton`: the LSTM scan's step loops, fused.

Imported only through :func:`pixelrnn.layers.scan_triton.kernels` (which decides whether Triton
compiles them for the GPU or runs them in its interpreter). Both kernels run one program per
(image, direction), grid (B, D); a program walks every step of the scan (paper sections 3.1,
3.2) over the packed buffers of :class:`pixelrnn.layers.lstm_scan._Packing`, in the order of
:class:`pixelrnn.layers.lstm_scan.TorchSteps`:

* ``acts`` (D, H W B, 4h): pre-activations in, gates out (forward); ``grad_acts`` the same shape;
* ``hidden`` (D, (steps + 1) row B, h) and ``cell`` (D, (steps + 1) slots B, h): the states read
  at step t live in buffer row t, those written by it in row t + 1;
* per step: ``start`` (its first packed position), ``first`` (its first slot), ``count`` (its
  number of slots); ``offsets`` (K,) the slots read, relative to a cell's own.

A step's cells are taken SLOTS at a time as the rows of a (SLOTS, h) tile, whose
state-to-state product is ``tl.dot`` in (SLOTS, BLOCK) x (BLOCK, BLOCK) blocks. Images and directions never read each
other's states, so programs never wait for each other; within a program a barrier after each
step makes the states it wrote visible to all its threads before the next step reads them.
Index arithmetic is in int64.
"""

from __future__ import annotations

import triton
import triton.language as tl


# Not tl.sigmoid: the standard library's functions are compiled or interpreted as Triton was
# when first imported, and the interpreter may be turned on after that (scan_triton.kernels).
@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    return 2.0 * _sigmoid(2.0 * x) - 1.0


@triton.jit
def _rows(start, first, count, t, s0, batch, b, row, pad, slots, SLOTS: tl.constexpr):
    """Step t's cells s0 .. s0 + SLOTS - 1 (those past its count not live): their rows in the
    gates, in the hidden buffer they read (plus offset * batch; they write row * batch later)
    and in the cell buffer they read (they write slots * batch later)."""
    m = s0 + tl.arange(0, SLOTS).to(tl.int64)
    slot = tl.load(first + t).to(tl.int64) + m
    z_rows = (tl.load(start + t).to(tl.int64) + m) * batch + b
    return m < tl.load(count + t), z_rows, (t * row + pad + slot) * batch + b, (t * slots + slot) * batch + b


@triton.jit
def lstm_scan_forward(
    acts, hidden, cell, weight, start, first, count, offsets,
    steps, batch, row, pad, slots, hid,
    acts_d, hidden_d, cell_d, weight_d,
    TAPS: tl.constexpr, SLOTS: tl.constexpr, BLOCK: tl.constexpr, PRECISION: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)  # images on the grid's first axis: up to 2^31 - 1 of them
    d = tl.program_id(1).to(tl.int64)
    acts += d * acts_d
    hidden += d * hidden_d
    cell += d * cell_d
    weight += d * weight_d
    four = 4 * hid
    lanes = tl.arange(0, BLOCK)
    for t in range(steps):
        for s0 in range(0, tl.load(count + t), SLOTS):
            live, z_rows, read_rows, c_rows = _rows(start, first, count, t, s0, batch, b, row, pad, slots, SLOTS)
            for j0 in range(0, hid, BLOCK):  # a block of units: its four gates, then its update
                j = j0 + lanes
                tile = live[:, None] & (j < hid)[None, :]
                z = acts + z_rows[:, None] * four + j[None, :]
                z_i = tl.load(z, mask=tile, other=0.0)
                z_f = tl.load(z + hid, mask=tile, other=0.0)
                z_o = tl.load(z + 2 * hid, mask=tile, other=0.0)
                z_g = tl.load(z + 3 * hid, mask=tile, other=0.0)
                for k in tl.static_range(TAPS):
                    a_rows = read_rows + tl.load(offsets + k) * batch
                    for k0 in range(0, hid, BLOCK):
                        kk = k0 + lanes
                        a = tl.load(hidden + a_rows[:, None] * hid + kk[None, :],
                                    mask=live[:, None] & (kk < hid)[None, :], other=0.0)
                        w = weight + (k * hid + kk[:, None]) * four + j[None, :]
                        w_tile = (kk < hid)[:, None] & (j < hid)[None, :]
                        z_i += tl.dot(a, tl.load(w, mask=w_tile, other=0.0), input_precision=PRECISION)
                        z_f += tl.dot(a, tl.load(w + hid, mask=w_tile, other=0.0), input_precision=PRECISION)
                        z_o += tl.dot(a, tl.load(w + 2 * hid, mask=w_tile, other=0.0), input_precision=PRECISION)
                        z_g += tl.dot(a, tl.load(w + 3 * hid, mask=w_tile, other=0.0), input_precision=PRECISION)
                i, f, o, g = _sigmoid(z_i), _sigmoid(z_f), _sigmoid(z_o), _tanh(z_g)
                tl.store(z, i, mask=tile)
                tl.store(z + hid, f, mask=tile)
                tl.store(z + 2 * hid, o, mask=tile)
                tl.store(z + 3 * hid, g, mask=tile)
                c = f * tl.load(cell + c_rows[:, None] * hid + j[None, :], mask=tile, other=0.0) + i * g
                tl.store(cell + (c_rows + slots * batch)[:, None] * hid + j[None, :], c, mask=tile)
                tl.store(hidden + (read_rows + row * batch)[:, None] * hid + j[None, :], o * _tanh(c), mask=tile)
        tl.debug_barrier()


@triton.jit
def lstm_scan_backward(
    acts, grad_acts, cell, grad_hidden, grad_cell, weight, start, first, count, offsets,
    steps, batch, row, pad, slots, hid,
    acts_d, hidden_d, cell_d, weight_d,
    TAPS: tl.constexpr, SLOTS: tl.constexpr, BLOCK: tl.constexpr, PRECISION: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)  # images on the grid's first axis: up to 2^31 - 1 of them
    d = tl.program_id(1).to(tl.int64)
    acts += d * acts_d
    grad_acts += d * acts_d
    cell += d * cell_d
    grad_cell += d * cell_d
    grad_hidden += d * hidden_d
    weight += d * weight_d
    four = 4 * hid
    lanes = tl.arange(0, BLOCK)
    for back in range(steps):
        t = steps - 1 - back
        # 1. Through the cell update and the gates' nonlinearities, a block of units at a time.
        for s0 in range(0, tl.load(count + t), SLOTS):
            live, z_rows, read_rows, c_rows = _rows(start, first, count, t, s0, batch, b, row, pad, slots, SLOTS)
            for j0 in range(0, hid, BLOCK):
                j = j0 + lanes
                tile = live[:, None] & (j < hid)[None, :]
                z = z_rows[:, None] * four + j[None, :]
                i = tl.load(acts + z, mask=tile, other=0.0)
                f = tl.load(acts + z + hid, mask=tile, other=0.0)
                o = tl.load(acts + z + 2 * hid, mask=tile, other=0.0)
                g = tl.load(acts + z + 3 * hid, mask=tile, other=0.0)
                at_c = c_rows[:, None] * hid + j[None, :]
                at_c_new = at_c + slots * batch * hid
                dh = tl.load(grad_hidden + (read_rows + row * batch)[:, None] * hid + j[None, :], mask=tile, other=0.0)
                tanh_c = _tanh(tl.load(cell + at_c_new, mask=tile, other=0.0))
                dc = tl.load(grad_cell + at_c_new, mask=tile, other=0.0) + dh * o * (1.0 - tanh_c * tanh_c)
                tl.store(grad_cell + at_c, dc * f, mask=tile)
                tl.store(grad_acts + z, dc * g * i * (1.0 - i), mask=tile)
                tl.store(grad_acts + z + hid, dc * tl.load(cell + at_c, mask=tile, other=0.0) * f * (1.0 - f),
                         mask=tile)
                tl.store(grad_acts + z + 2 * hid, dh * tanh_c * o * (1.0 - o), mask=tile)
                tl.store(grad_acts + z + 3 * hid, dc * i * (1.0 - g * g), mask=tile)
        tl.debug_barrier()
        # 2. Into the states this step read: grad_hidden[read] += dz W_k^T, one tap at a time
        #    (two taps' reads overlap, so a barrier separates them).
        for k in tl.static_range(TAPS):
            for s0 in range(0, tl.load(count + t), SLOTS):
                live, z_rows, read_rows, c_rows = _rows(start, first, count, t, s0, batch, b, row, pad, slots, SLOTS)
                a_rows = read_rows + tl.load(offsets + k) * batch
                for k0 in range(0, hid, BLOCK):
                    kk = k0 + lanes
                    acc = tl.full((SLOTS, BLOCK), 0.0, dtype=grad_hidden.dtype.element_ty)  # not tl.zeros: see _sigmoid
                    for j0 in range(0, hid, BLOCK):
                        j = j0 + lanes
                        tile = live[:, None] & (j < hid)[None, :]
                        dz = grad_acts + z_rows[:, None] * four + j[None, :]
                        w_t = weight + (k * hid + kk[None, :]) * four + j[:, None]  # (BLOCK j, BLOCK k)
                        w_tile = (j < hid)[:, None] & (kk < hid)[None, :]
                        for gate in tl.static_range(4):
                            acc += tl.dot(tl.load(dz + gate * hid, mask=tile, other=0.0),
                                          tl.load(w_t + gate * hid, mask=w_tile, other=0.0), input_precision=PRECISION)
                    into = grad_hidden + a_rows[:, None] * hid + kk[None, :]
                    into_tile = live[:, None] & (kk < hid)[None, :]
                    tl.store(into, tl.load(into, mask=into_tile, other=0.0) + acc, mask=into_tile)
            tl.debug_barrier()
