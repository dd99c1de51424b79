import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from metatransformer.pathway import PathwayLinear
from metatransformer.pathway.layer import _PathwayLinearFunction


def _layer(bias=True, groups=1, num_aux=1, dtype=torch.float64, trainable_aux=True):
    torch.manual_seed(0)
    linear = nn.Linear(6, 9, bias=bias, dtype=dtype)
    aux = [torch.randn(9, 6, dtype=dtype) for _ in range(num_aux)]
    layer = PathwayLinear(linear, aux, scale_groups=groups, trainable_aux=trainable_aux)
    with torch.no_grad():
        for scale in layer.scales:
            scale.copy_(torch.randn_like(scale))
    return layer


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("groups", [1, 3, 9])
def test_gradcheck_against_finite_differences(bias, groups):
    torch.manual_seed(0)
    tensors = [
        torch.randn(2, 4, 6, dtype=torch.float64),  # x
        torch.randn(9, 6, dtype=torch.float64),  # W
        torch.randn(9, dtype=torch.float64) if bias else None,  # b
        torch.randn(groups, dtype=torch.float64),  # λ_1
        torch.randn(groups, dtype=torch.float64),  # λ_2
        torch.randn(9, 6, dtype=torch.float64),  # W_aux,1
        torch.randn(9, 6, dtype=torch.float64),  # W_aux,2
    ]
    inputs = [t.requires_grad_(True) if t is not None else None for t in tensors]
    torch.autograd.gradcheck(lambda x, w, b, *rest: _PathwayLinearFunction.apply(x, w, b, 2, *rest), inputs)


def test_gradients_equal_plain_autograd_of_the_m2pt_formula():
    layer = _layer(groups=3, num_aux=2)
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    target = torch.randn(3, 5, 9, dtype=torch.float64)
    F.mse_loss(layer(x), target).backward()

    # Reference: the original M2PT layer, F.linear(x, W + λ·W_aux, b), differentiated by autograd.
    w = layer.target_weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    scales = [s.detach().clone().requires_grad_(True) for s in layer.scales]
    auxes = [a.detach().clone().requires_grad_(True) for a in layer.aux_weights]
    w_eff = w + sum(s.repeat_interleave(3)[:, None] * a for s, a in zip(scales, auxes))
    w_eff.retain_grad()
    F.mse_loss(F.linear(x, w_eff, b), target).backward()

    torch.testing.assert_close(layer.target_weight.grad, w.grad)
    torch.testing.assert_close(layer.bias.grad, b.grad)
    for mine, ref, aux in zip(layer.scales, scales, auxes):
        torch.testing.assert_close(mine.grad, ref.grad)
        # dL/dλ = <dL/dW_eff, W_aux> over each group of rows
        expected = (w_eff.grad * aux.detach()).reshape(3, -1).sum(1)
        torch.testing.assert_close(mine.grad, expected.to(mine.dtype))  # λ is float32 by design
    for mine, ref in zip(layer.aux_weights, auxes):
        torch.testing.assert_close(mine.grad, ref.grad)


def test_weight_property_is_the_effective_weight_and_zero_scale_is_identity():
    linear = nn.Linear(6, 9)
    x = torch.randn(4, 6)
    expected = linear(x)
    layer = PathwayLinear(linear, [torch.randn(9, 6)])
    assert torch.equal(layer(x), expected)  # λ initialised to 0: bit-identical
    with torch.no_grad():
        layer.scales[0].fill_(0.5)
    torch.testing.assert_close(layer.weight, linear.weight + 0.5 * layer.aux_weights[0])
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, linear.bias))


def test_frozen_aux_gets_no_gradient_and_is_a_parameter_not_a_buffer():
    layer = _layer(trainable_aux=False, dtype=torch.float32)
    layer(torch.randn(2, 6)).sum().backward()
    assert layer.aux_weights[0].grad is None and not layer.aux_weights[0].requires_grad
    assert layer.scales[0].grad is not None
    assert list(layer.buffers()) == []


def test_aux_is_copied_not_shared():
    aux = torch.randn(9, 6)
    layer = PathwayLinear(nn.Linear(6, 9), [aux])
    aux.zero_()
    assert layer.aux_weights[0].abs().sum() > 0


def test_bf16_small_scale_is_not_lost():
    """λ = 1e-3 with bf16 storage and bf16 autocast: the term survives where a bf16 sum would drop it."""
    torch.manual_seed(0)
    linear = nn.Linear(256, 256)
    aux = torch.randn(256, 256) * 0.02
    layer = PathwayLinear(linear, [aux], trainable_aux=False, aux_dtype=torch.bfloat16)
    with torch.no_grad():
        layer.scales[0].fill_(1e-3)
    w64 = linear.weight.double() + 1e-3 * layer.aux_weights[0].double()
    term64 = w64 - linear.weight.double()

    # The effective weight keeps the λ term to float32 precision...
    term = layer.weight.double() - linear.weight.double()
    assert (term - term64).abs().max() < 1e-3 * term64.abs().max()
    # ...whereas forming it in bf16 (the trap) loses most of it.
    naive = linear.weight.bfloat16() + torch.tensor(1e-3, dtype=torch.bfloat16) * layer.aux_weights[0]
    naive_term = naive.double() - linear.weight.bfloat16().double()
    assert (naive_term - term64).norm() > 0.5 * term64.norm()

    # The λ gradient under bf16 autocast matches the float64 reference.
    x = torch.randn(64, 256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    grad64 = (torch.ones(64, 256, dtype=torch.float64).t() @ x.double() * layer.aux_weights[0].double()).sum()
    assert abs(layer.scales[0].grad.item() - grad64.item()) < 2e-2 * abs(grad64.item())


def test_bf16_target_weights_keep_the_scale_term_in_the_effective_weight():
    """bf16-stored target and aux (the path a bf16 model takes): W + λ·W_aux is still formed in float32."""
    torch.manual_seed(0)
    linear = nn.Linear(128, 128).to(torch.bfloat16)
    layer = PathwayLinear(linear, [torch.randn(128, 128) * 0.02])
    assert layer.target_weight.dtype == torch.bfloat16 and layer.aux_weights[0].dtype == torch.bfloat16
    with torch.no_grad():
        layer.scales[0].fill_(1e-3)
    merged = layer.merged_weight()
    assert merged.dtype == torch.float32
    term64 = 1e-3 * layer.aux_weights[0].double()
    assert ((merged.double() - linear.weight.double()) - term64).abs().max() < 1e-3 * term64.abs().max()
    naive = linear.weight + torch.tensor(1e-3, dtype=torch.bfloat16) * layer.aux_weights[0]
    assert ((naive.double() - linear.weight.double()) - term64).norm() > 0.5 * term64.norm()


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(9, 5\).*\(9, 6\)"):
        PathwayLinear(nn.Linear(6, 9), [torch.randn(9, 5)])
    with pytest.raises(ValueError, match="scale_groups=4"):
        PathwayLinear(nn.Linear(6, 9), [torch.randn(9, 6)], scale_groups=4)


def test_scales_stay_float32_when_the_model_is_cast():
    layer = PathwayLinear(nn.Linear(6, 9), [torch.randn(9, 6)]).to(torch.bfloat16)
    assert layer.target_weight.dtype == torch.bfloat16 and layer.aux_weights[0].dtype == torch.bfloat16
    assert layer.scales[0].dtype == torch.float32
    out = layer(torch.randn(2, 6, dtype=torch.bfloat16))
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and layer.scales[0].grad.dtype == torch.float32
