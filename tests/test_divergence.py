import math

import torch

from uegr.methods.divergence import entropy, js_divergence, kl, symmetric_kl


def _probs(k, b=5, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, b, c, generator=g).softmax(-1)


def test_js_zero_for_identical_members():
    p = _probs(1)
    assert js_divergence(p.repeat(3, 1, 1)).item() < 1e-6


def test_js_symmetric_in_its_members():
    p = _probs(3)
    permuted = p[[2, 0, 1]]
    assert torch.allclose(js_divergence(p), js_divergence(permuted), atol=1e-7)
    assert torch.allclose(js_divergence(p[:2]), js_divergence(p[[1, 0]]), atol=1e-7)


def test_js_bounded_by_log_k():
    for k in (2, 3, 5):
        # one-hot members on different classes reach the bound
        onehot = torch.eye(k).unsqueeze(1)
        assert abs(js_divergence(onehot).item() - math.log(k)) < 1e-5
        assert js_divergence(_probs(k, seed=k)).item() <= math.log(k) + 1e-6


def test_js_equals_mean_kl_to_mixture():
    p = _probs(4, seed=3)
    m = p.mean(0)
    expected = torch.stack([kl(p[i], m) for i in range(4)]).mean(0).mean()
    assert torch.allclose(js_divergence(p), expected, atol=1e-6)


def test_js_float32_under_half_inputs():
    p = _probs(3).to(torch.bfloat16)
    assert js_divergence(p).dtype == torch.float32


def test_kl_and_symmetric_kl_properties():
    a, b = torch.randn(6, 3), torch.randn(6, 3)
    assert symmetric_kl(a, b).item() >= 0
    assert abs(symmetric_kl(a, b).item() - symmetric_kl(b, a).item()) < 1e-6
    assert symmetric_kl(a, a).item() < 1e-6
    assert torch.all(entropy(torch.full((2, 4), 0.25)) - math.log(4) < 1e-6)
