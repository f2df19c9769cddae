"""A fused LSTM recurrence over the cells of a feature map, with a hand-written backward.

Both recurrent layers of the paper are one loop of LSTM steps over an H x W map
(sections 3.1, 3.2):

* Row LSTM: step t updates row t, every column; the recurrent input of column j
  is the previous row's state at columns j-1, j, j+1 (a 1 x 3 convolution).
* Diagonal BiLSTM: step t updates the diagonal {(r, t - r)}; the recurrent
  input of row r is the state of the cell itself (its left neighbour) and of the
  cell above, i.e. rows r and r-1 at the previous step (a 2 x 1 convolution in
  the skewed map). Only the H x W real cells are computed: no skewed padding.

Either way a step reads ``n`` cells that lie at a constant stride in the
row-major H x W map, and each cell has a *slot* (its column, or its row) that
holds its LSTM state between steps. Slots start from the learned initial state
(h0, c0); reads outside the slots see zeros, as a zero-padded convolution does.

Maps come in the cell-major layout (H, W, B, D, F). The PyTorch scan first packs
the gates step by step (each step's cells contiguous, the same order in every
direction), so that a step of all D directions, each with its own weights, is one
batched matrix product per slot offset and one operator per LSTM update, reading
and writing slices of history buffers; its backward is written by hand. Memory is
linear in H * W. The compiled CPU kernel (:mod:`pixelrnn.layers.scan_kernel`)
runs the same recurrence on the map directly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from . import scan_kernel, scan_triton


@dataclass(frozen=True)
class ScanPlan:
    """Which cells each step updates, and how slots read the previous state.

    mode: "rows" (step t = row t, slot = column) or "diagonals" (step t =
    diagonal t, slot = row). offsets: the slots, relative to a cell's own,
    whose previous hidden states form its recurrent input, in weight order.
    mirrored: per direction, whether it runs on the left-right mirrored map
    (the Diagonal BiLSTM's right-to-left direction), without copying the map.
    """

    mode: str
    height: int
    width: int
    offsets: tuple[int, ...]
    mirrored: tuple[bool, ...] = (False,)

    @property
    def steps(self) -> int:
        return self.height if self.mode == "rows" else self.height + self.width - 1

    @property
    def slots(self) -> int:
        return self.width if self.mode == "rows" else self.height

    def active_slots(self, t: int) -> tuple[int, int]:
        """First and last slot updated at step t."""
        if self.mode == "rows":
            return 0, self.width - 1
        return max(0, t - self.width + 1), min(self.height - 1, t)

    def cells(self, t: int, direction: int) -> tuple[int, int]:
        """(flat index r * W + c of the first cell, stride between cells) of step t."""
        first, _ = self.active_slots(t)
        if self.mode == "rows":
            return t * self.width, 1
        if self.mirrored[direction]:  # cell (r, W - 1 - (t - r))
            return first * (self.width + 1) + self.width - 1 - t, self.width + 1
        return first * (self.width - 1) + t, self.width - 1  # cell (r, t - r)

    def starting_slots(self, t: int) -> range:
        """Slots whose first update is at step t (their previous state is the initial one)."""
        if self.mode == "rows":
            return range(self.width) if t == 0 else range(0)
        return range(t, t + 1) if t < self.height else range(0)


class _Packing:
    """Index tensors that move a plan's cells between the map and a step-major packing.

    Packed position p runs over the steps in order and, within step t, over its active
    slots, so step t's cells are the contiguous positions ``start[t]`` onwards, in the
    same order in every direction (only the map cell a slot stands for differs).
    Hidden states live in a buffer (D, (steps + 1) * row, B, h) whose row t holds the
    states *read* at step t (row t + 1 those written by it), with ``pad`` zero slots on
    each side; cell states in (D, (steps + 1) * slots, B, h). Before a step writes a
    slot it holds the initial state, so a slot's first step reads h0 and c0 there.
    """

    def __init__(self, plan: ScanPlan, device: torch.device) -> None:
        directions = len(plan.mirrored)
        self.pad = max(map(abs, plan.offsets))
        self.row = plan.slots + 2 * self.pad
        self.start: list[int] = []
        steps: list[int] = []
        slots: list[int] = []
        cells: list[list[int]] = [[] for _ in range(directions)]
        for t in range(plan.steps):
            first, last = plan.active_slots(t)
            self.start.append(len(steps))
            steps += [t] * (last - first + 1)
            slots += range(first, last + 1)
            for d in range(directions):
                begin, stride = plan.cells(t, d)
                cells[d] += [begin + stride * i for i in range(last - first + 1)]
        step, slot = torch.tensor(steps), torch.tensor(slots)

        def hidden_at(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return (t * self.row + self.pad + s).to(device)

        initial_step, initial_slot = torch.tensor(
            [(t, s) for t in range(plan.steps) for s in plan.starting_slots(t)]
        ).T
        cell = torch.tensor(cells)  # (D, H W): the map cell at each packed position
        self.identity = bool((cell == torch.arange(cell.shape[1])).all())  # rows, one direction
        self.from_map = cell.to(device)
        self.written = hidden_at(step + 1, slot)
        self.reads = torch.cat([hidden_at(step, slot + o) for o in plan.offsets])
        self.initial_hidden = hidden_at(initial_step, initial_slot)
        self.initial_cell = (initial_step * plan.slots + initial_slot).to(device)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(H, W, B, D, F) map -> (D, H W, B, F) packed: a new tensor."""
        height, width, batch, d, f = x.shape
        x = x.reshape(height * width, batch, d, f)
        packed = x.new_empty(d, height * width, batch, f)
        for k in range(d):
            if self.identity:
                packed[k] = x[:, :, k]
            else:
                torch.index_select(x[:, :, k], 0, self.from_map[k], out=packed[k])
        return packed

    def scatter(self, packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(D, H W, B, F) packed -> (H, W, B, D, F) map."""
        d, cells, batch, f = packed.shape
        if self.identity:
            return packed.permute(1, 2, 0, 3).reshape(height, width, batch, d, f)
        x = packed.new_empty(cells, batch, d, f)
        for k in range(d):
            x[:, :, k].index_copy_(0, self.from_map[k], packed[k])
        return x.view(height, width, batch, d, f)


@functools.lru_cache(maxsize=64)
def _packing(plan: ScanPlan, device: torch.device) -> _Packing:
    return _Packing(plan, device)


class TorchSteps:
    """The step loops of :class:`_LSTMScan` in PyTorch operators: K + 6 kernels a step forward,
    K + 14 backward.

    ``forward`` turns ``acts`` (D, H W B, 4h) from pre-activations into gates and fills the
    history buffers ``hidden`` (D, (steps + 1) row B, h) and ``cell``; ``backward`` fills
    ``grad_acts`` and adds into ``grad_hidden`` and ``grad_cell`` (same shapes). Each step
    multiplies the states it reads straight into its gate pre-activations (one ``baddbmm_``
    per slot offset), applies the gates in place and writes its states through ``out=``:
    nothing is copied or saved per step, and every operand is one slice of a flat
    (D, rows * B, F) buffer. On a GPU, where a step's operators are too small to fill it,
    their number is what costs; :class:`pixelrnn.layers.scan_triton.TritonSteps` runs the
    same loops as one kernel each.
    """

    @staticmethod
    def forward(acts, hidden, cell, weight, plan: ScanPlan, pack: _Packing, batch: int) -> None:
        d, four_h = acts.shape[0], acts.shape[-1]
        hid = four_h // 4
        pad, row, slots = pack.pad, pack.row, plan.slots
        taps = weight.view(d, len(plan.offsets), hid, four_h).unbind(1)  # (D, h, 4h) each
        for t in range(plan.steps):
            first, last = plan.active_slots(t)
            span = (last - first + 1) * batch
            at_h, at_c = (t * row + pad + first) * batch, (t * slots + first) * batch
            z = acts.narrow(1, pack.start[t] * batch, span)
            for tap, o in zip(taps, plan.offsets):
                z.baddbmm_(hidden.narrow(1, at_h + o * batch, span), tap)
            z[..., : 3 * hid].sigmoid_()
            z[..., 3 * hid :].tanh_()
            i, f, o_gate, g = z.chunk(4, dim=-1)
            c_new = cell.narrow(1, at_c + slots * batch, span)
            torch.mul(f, cell.narrow(1, at_c, span), out=c_new)
            c_new.addcmul_(i, g)
            h_new = hidden.narrow(1, at_h + row * batch, span)
            torch.tanh(c_new, out=h_new)
            h_new.mul_(o_gate)

    @staticmethod
    def backward(acts, grad_acts, cell, grad_hidden, grad_cell, weight, plan: ScanPlan, pack: _Packing,
             batch: int) -> None:
        d, four_h = acts.shape[0], acts.shape[-1]
        hid = four_h // 4
        pad, row, slots = pack.pad, pack.row, plan.slots
        taps_t = weight.view(d, len(plan.offsets), hid, four_h).transpose(2, 3).unbind(1)
        for t in reversed(range(plan.steps)):
            first, last = plan.active_slots(t)
            span = (last - first + 1) * batch
            at_h, at_c = (t * row + pad + first) * batch, (t * slots + first) * batch
            at_z = pack.start[t] * batch
            act, dz = acts.narrow(1, at_z, span), grad_acts.narrow(1, at_z, span)
            i, f, o_gate, g = act.chunk(4, dim=-1)
            dz_i, dz_f, dz_o, dz_g = dz.chunk(4, dim=-1)
            dh = grad_hidden.narrow(1, at_h + row * batch, span)
            dc = grad_cell.narrow(1, at_c + slots * batch, span)
            tanh_c = torch.tanh(cell.narrow(1, at_c + slots * batch, span))
            torch.mul(dh, tanh_c, out=dz_o)
            dh_o = dh * o_gate
            dc.add_(dh_o).addcmul_(dh_o, tanh_c.mul_(tanh_c), value=-1)  # + dh o (1 - tanh^2 c)
            torch.mul(dc, g, out=dz_i)
            torch.mul(dc, cell.narrow(1, at_c, span), out=dz_f)
            torch.mul(dc, i, out=dz_g)
            torch.mul(dc, f, out=grad_cell.narrow(1, at_c, span))
            # Through the gates: sigmoid' = s (1 - s), tanh' = 1 - g^2.
            sig, dz_sig = act[..., : 3 * hid], dz[..., : 3 * hid]
            scaled = dz_sig * sig
            torch.addcmul(scaled, scaled, sig, value=-1, out=dz_sig)
            dz_g.addcmul_(dz_g * g, g, value=-1)
            for tap_t, o in zip(taps_t, plan.offsets):
                grad_hidden.narrow(1, at_h + o * batch, span).baddbmm_(dz, tap_t)


class _LSTMScan(torch.autograd.Function):
    """The scan around its step loops: packing, history buffers, and what needs no loop.

    Forward packs the gates step-major, starts the history buffers from (h0, c0) and
    runs ``steps`` (:class:`TorchSteps` by default); backward runs its reverse loop,
    then takes the state-to-state weight gradient in one product over all steps and
    the initial state's from the slots that read it.
    """

    @staticmethod
    def forward(ctx, gates_in, weight, h0, c0, plan: ScanPlan, steps=None):
        steps = steps or TorchSteps
        height, width, batch, d, four_h = gates_in.shape
        hid = four_h // 4
        pack = _packing(plan, gates_in.device)
        pad, row, slots = pack.pad, pack.row, plan.slots
        acts = pack.gather(gates_in).view(d, -1, four_h)  # (D, H W B, 4h): pre-activations, then gates
        hidden = gates_in.new_zeros(d, plan.steps + 1, row, batch, hid)
        hidden[:, :, pad : pad + slots] = h0.view(d, 1, 1, 1, hid)
        hidden = hidden.view(d, -1, hid)  # (D, (steps + 1) row B, h)
        cell = c0.view(d, 1, hid).expand(d, (plan.steps + 1) * slots * batch, hid).clone()
        steps.forward(acts, hidden, cell, weight, plan, pack, batch)
        ctx.plan, ctx.steps = plan, steps
        ctx.save_for_backward(weight, acts, hidden, cell)
        written = hidden.view(d, -1, batch, hid).index_select(1, pack.written)
        return pack.scatter(written, height, width)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        weight, acts, hidden, cell = ctx.saved_tensors
        plan = ctx.plan
        height, width, batch, d, hid = grad_out.shape
        four_h, cells = 4 * hid, height * width
        pack = _packing(plan, grad_out.device)
        row = pack.row
        # Gradient reaching each stored state: from the output, then from the steps reading it.
        grad_hidden = grad_out.new_zeros(d, (plan.steps + 1) * row, batch, hid)
        grad_hidden.index_copy_(1, pack.written, pack.gather(grad_out))
        grad_hidden = grad_hidden.view(d, -1, hid)
        grad_cell = torch.zeros_like(cell)
        grad_acts = torch.empty_like(acts)  # (D, H W B, 4h)
        ctx.steps.backward(acts, grad_acts, cell, grad_hidden, grad_cell, weight, plan, pack, batch)
        reads = hidden.view(d, -1, batch, hid).index_select(1, pack.reads)
        reads = reads.view(d, len(plan.offsets), cells * batch, hid).transpose(2, 3).unbind(1)
        grad_weight = torch.cat([torch.bmm(read, grad_acts) for read in reads], dim=1)
        grad_hidden = grad_hidden.view(d, -1, batch, hid)
        grad_h0 = grad_hidden.index_select(1, pack.initial_hidden).sum((1, 2))
        grad_c0 = grad_cell.view(d, -1, batch, hid).index_select(1, pack.initial_cell).sum((1, 2))
        grad_gates = pack.scatter(grad_acts.view(d, cells, batch, four_h), height, width)
        return grad_gates, grad_weight, grad_h0, grad_c0, None, None


def lstm_scan(
    gates_in: torch.Tensor,
    weight: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    plan: ScanPlan,
) -> torch.Tensor:
    """Run the LSTM recurrence of ``plan`` over a map; returns hidden states (H, W, B, D, h).

    gates_in: (H, W, B, D, 4h) input-to-state pre-activations, gates [i, f, o, g];
    weight: (D, K h, 4h) state-to-state weights for the K slot
    ``offsets``; h0, c0: (D, h) learned initial state. On the CPU the compiled
    kernel of :mod:`pixelrnn.scan_kernel` runs it where it can be built; on CUDA the
    Triton kernels of :mod:`pixelrnn.layers.scan_triton` where they are turned on.
    """
    if len(plan.mirrored) != gates_in.shape[3]:
        raise ValueError(f"plan has {len(plan.mirrored)} directions, gates have {gates_in.shape[3]}")
    # Under bf16 autocast the gates come in bf16: the recurrence runs in the weights' precision
    # (float32), since its state is carried over hundreds of steps.
    gates_in = gates_in.to(weight.dtype).contiguous()
    with torch.autocast(gates_in.device.type, enabled=False):
        if scan_triton.supports(gates_in):
            return _LSTMScan.apply(gates_in, weight, h0, c0, plan, scan_triton.TritonSteps)
        if scan_kernel.supports(gates_in, plan):
            return scan_kernel.NativeLSTMScan.apply(gates_in, weight, h0, c0, plan)
        return _LSTMScan.apply(gates_in, weight, h0, c0, plan, TorchSteps)
