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

Maps use the cell-major layout (H, W, B, D, F), so that the B x D x F values of
a cell are contiguous and a step's reads and writes touch n blocks of memory.
D independent directions (each with its own weights) run in the same batched
matrix products; the state is kept as (D, slots, B, F). Autograd would record
some 20 small operations per step and allocate a full-size gradient per step;
the Function below keeps what the backward needs per step and computes the
weight gradient with one product per step. Memory is linear in H * W.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from . import scan_kernel


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


def _cell_view(x: torch.Tensor, plan: ScanPlan, t: int, direction: int) -> torch.Tensor:
    """View (n, B, F) of step t's cells of one direction in a contiguous (H, W, B, D, F) tensor."""
    _, _, b, d, f = x.shape
    first, last = plan.active_slots(t)
    start, stride = plan.cells(t, direction)
    cell = b * d * f
    return x.as_strided(
        (last - first + 1, b, f),
        (stride * cell, d * f, 1),
        x.storage_offset() + start * cell + direction * f,
    )


class _LSTMScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates_in, weight, h0, c0, plan: ScanPlan):
        height, width, batch, d, four_h = gates_in.shape
        hid = four_h // 4
        pad = max(map(abs, plan.offsets))
        # State per slot, with `pad` zero slots on each side for out-of-range reads.
        state_h = gates_in.new_zeros(d, plan.slots + 2 * pad, batch, hid)
        state_c = gates_in.new_zeros(d, plan.slots, batch, hid)
        state_h[:, pad : pad + plan.slots] = h0.view(d, 1, 1, hid)
        state_c[:] = c0.view(d, 1, 1, hid)
        out = gates_in.new_empty(height, width, batch, d, hid)
        saved = []
        for t in range(plan.steps):
            first, last = plan.active_slots(t)
            n = last - first + 1
            reads = torch.cat(
                [state_h[:, pad + first + o : pad + last + 1 + o] for o in plan.offsets], dim=-1
            )  # (D, n, B, K h)
            z = torch.bmm(reads.view(d, n * batch, -1), weight).view(d, n, batch, four_h)
            for k in range(d):
                z[k] += _cell_view(gates_in, plan, t, k)
            z[..., : 3 * hid].sigmoid_()
            z[..., 3 * hid :].tanh_()
            i, f, o, g = z.chunk(4, dim=-1)
            c_prev = state_c[:, first : last + 1].clone()
            c_new = torch.addcmul(f * c_prev, i, g)
            h_new = o * torch.tanh(c_new)
            state_h[:, pad + first : pad + last + 1] = h_new
            state_c[:, first : last + 1] = c_new
            for k in range(d):
                _cell_view(out, plan, t, k).copy_(h_new[k])
            saved.append((reads, z, c_prev, c_new))
        ctx.plan, ctx.saved = plan, saved
        ctx.save_for_backward(weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        plan, saved = ctx.plan, ctx.saved
        grad_out = grad_out.contiguous()
        height, width, batch, d, hid = grad_out.shape
        pad = max(map(abs, plan.offsets))
        grad_gates = grad_out.new_empty(height, width, batch, d, 4 * hid)
        grad_weight = torch.zeros_like(weight)
        grad_h0 = grad_out.new_zeros(d, hid)
        grad_c0 = grad_out.new_zeros(d, hid)
        # Gradient flowing into each slot's state at the previous step.
        carry_h = grad_out.new_zeros(d, plan.slots + 2 * pad, batch, hid)
        carry_c = grad_out.new_zeros(d, plan.slots, batch, hid)
        weight_t = weight.transpose(1, 2)
        for t in reversed(range(plan.steps)):
            first, last = plan.active_slots(t)
            n = last - first + 1
            reads, act, c_prev, c_new = saved[t]
            i, f, o, g = act.chunk(4, dim=-1)
            dh = carry_h[:, pad + first : pad + last + 1].clone()
            for k in range(d):
                dh[k] += _cell_view(grad_out, plan, t, k)
            tanh_c = torch.tanh(c_new)
            dc = carry_c[:, first : last + 1] + dh * o * (1 - tanh_c * tanh_c)
            dz = torch.cat(
                [
                    dc * g * i * (1 - i),
                    dc * c_prev * f * (1 - f),
                    dh * tanh_c * o * (1 - o),
                    dc * i * (1 - g * g),
                ],
                dim=-1,
            )  # (D, n, B, 4h)
            for k in range(d):
                _cell_view(grad_gates, plan, t, k).copy_(dz[k])
            dz_flat = dz.view(d, n * batch, 4 * hid)
            grad_weight.baddbmm_(reads.view(d, n * batch, -1).transpose(1, 2), dz_flat)
            d_reads = torch.bmm(dz_flat, weight_t).view(d, n, batch, len(plan.offsets), hid)
            carry_h[:, pad + first : pad + last + 1] = 0
            for k, off in enumerate(plan.offsets):
                carry_h[:, pad + first + off : pad + last + 1 + off] += d_reads[:, :, :, k]
            carry_c[:, first : last + 1] = dc * f
            for slot in plan.starting_slots(t):
                grad_h0 += carry_h[:, pad + slot].sum(1)
                grad_c0 += carry_c[:, slot].sum(1)
                carry_h[:, pad + slot] = 0
                carry_c[:, slot] = 0
        return grad_gates, grad_weight, grad_h0, grad_c0, None


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
    kernel of :mod:`pixelrnn.scan_kernel` runs it where it can be built.
    """
    if len(plan.mirrored) != gates_in.shape[3]:
        raise ValueError(f"plan has {len(plan.mirrored)} directions, gates have {gates_in.shape[3]}")
    # Under bf16 autocast the gates come in bf16: the recurrence runs in the weights' precision
    # (float32), since its state is carried over hundreds of steps.
    gates_in = gates_in.to(weight.dtype).contiguous()
    function = scan_kernel.NativeLSTMScan if scan_kernel.supports(gates_in, plan) else _LSTMScan
    with torch.autocast(gates_in.device.type, enabled=False):
        return function.apply(gates_in, weight, h0, c0, plan)
