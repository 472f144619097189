"""1x1 convs on pooled inputs train as F.linear (semgen.classifier.pointwise): the same function,
the same gradients, the same checkpoints and exported graphs."""

import copy

import torch
from torch import nn

from semgen.classifier.models import create_model
from semgen.classifier.pointwise import PooledPointwiseConv2d


def _plain_copy(model):
    """The same model with every PooledPointwiseConv2d back to nn.Conv2d."""
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if type(m) is PooledPointwiseConv2d:
            m.__class__ = nn.Conv2d
    return plain


def test_squeeze_excitation_and_head_convs_train_as_linear_with_the_same_gradients():
    torch.manual_seed(0)
    model = create_model("mobilenetv3_small_050", 5)
    swapped = [n for n, m in model.named_modules() if type(m) is PooledPointwiseConv2d]
    assert any(".se.conv_reduce" in n for n in swapped) and "net.conv_head" in swapped
    # subclasses (timm's Conv2dSame) and strided / grouped convs are left alone
    lite = create_model("efficientnet_lite0_035", 5)
    assert not any(type(m) is PooledPointwiseConv2d and (m.groups > 1 or m.stride != (1, 1))
                   for m in lite.modules())
    assert any(type(m).__name__ == "Conv2dSame" for m in lite.modules())

    plain = _plain_copy(model)
    assert not any(type(m) is PooledPointwiseConv2d for m in plain.modules())
    x = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    grads = []
    for m in (model, plain):
        m.train()
        torch.manual_seed(2)  # the same dropout mask
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    # float rounding only: both sum the same products in another order. Measured against the
    # largest gradient, since some are zero up to rounding (a BatchNorm bias that feeds the next
    # BatchNorm through a conv: seen ~1e-7 either way, so their relative difference means nothing)
    scale = max(float(g.abs().max()) for g in grads[1].values())
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-3, atol=1e-5 * scale, msg=n)


def test_eval_mode_is_the_convolution_unchanged():
    torch.manual_seed(0)
    model = create_model("mobilenetv3_small_050", 5).eval()
    plain = _plain_copy(model).eval()
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))  # the very same convolution: bit for bit
    assert list(model.state_dict()) == list(plain.state_dict())
