"""The fused LSTM scan computes exactly what the plain reference recurrences compute."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model

import pixelrnn
from pixelrnn.lstm_scan import ScanPlan, lstm_scan

CASES = [
    ("row_lstm", 1, 2, {}),
    ("row_lstm", 3, 256, {}),
    ("row_lstm", 1, 4, {"kernel_size": 1}),
    ("row_lstm", 3, 4, {"kernel_size": 5}),
    ("diagonal_bilstm", 1, 2, {}),
    ("diagonal_bilstm", 3, 256, {}),
    ("diagonal_bilstm", 3, 4, {"residual": False, "skip": False}),
]
SIZES = [(1, 1), (1, 5), (5, 1), (3, 7), (6, 4), (5, 5)]


def _run(model, x, fused):
    model.set_fused(fused).zero_grad()
    x = x.clone().requires_grad_()
    logits = model(x)
    weights = torch.linspace(-1, 1, logits.numel(), dtype=logits.dtype).view_as(logits)
    (logits * weights).sum().backward()
    return logits.detach(), x.grad, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("arch,channels,levels,options", CASES)
@pytest.mark.parametrize("height,width", SIZES)
def test_fused_matches_reference_forward_and_backward(arch, channels, levels, options, height, width):
    model = tiny_model(arch, channels, levels, **options)
    x = torch.rand(3, channels, height, width, dtype=torch.float64) * (levels - 1)
    fused, reference = _run(model, x, True), _run(model, x, False)
    torch.testing.assert_close(fused[0], reference[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(fused[1], reference[1], rtol=0, atol=1e-12)
    for name, grad in reference[2].items():
        torch.testing.assert_close(fused[2][name], grad, rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize("name", ["binarized-mnist-diagonal-bilstm", "binarized-mnist-row-lstm"])
def test_fused_matches_reference_at_the_paper_configuration_in_float32(name):
    torch.manual_seed(0)
    model = pixelrnn.build_paper_model(name)
    x = torch.randint(0, 2, (4, 1, 28, 28)).float()
    fused, reference = _run(model, x, True), _run(model, x, False)
    torch.testing.assert_close(fused[0], reference[0], rtol=1e-4, atol=1e-4)
    for name_, grad in reference[2].items():
        torch.testing.assert_close(fused[2][name_], grad, rtol=1e-3, atol=1e-5, msg=name_)


def test_scan_gradients_pass_gradcheck():
    torch.manual_seed(0)
    height, width, batch, hidden = 3, 4, 2, 2
    plan = ScanPlan("diagonals", height, width, offsets=(0, -1), mirrored=(False, True))
    inputs = (
        torch.randn(height, width, batch, 2, 4 * hidden, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 2 * hidden, 4 * hidden, dtype=torch.float64, requires_grad=True),
        torch.randn(2, hidden, dtype=torch.float64, requires_grad=True),
        torch.randn(2, hidden, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda *a: lstm_scan(*a, plan), inputs)


def test_scan_refuses_mismatched_directions():
    plan = ScanPlan("diagonals", 2, 2, offsets=(0, -1), mirrored=(False,))
    with pytest.raises(ValueError, match="directions"):
        lstm_scan(torch.zeros(2, 2, 1, 2, 8), torch.zeros(2, 4, 8), torch.zeros(2, 2), torch.zeros(2, 2), plan)
