"""Every registered model honours the forward contract of docs/design.md.

Parametrised over ``list_models()``, so new families and variants are covered as they register.
Models are built small where their constructor allows it, to keep the CPU time low.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from sirst.models import create_model, list_models
from sirst.models.registry import _MODELS

# Small settings tried on each constructor; a keyword is used only if the constructor takes it.
SMALL_KWARGS: dict[str, object] = {
    "channel_size": "one",  # DNANet family
    "channels": (4, 8, 8, 16),  # ACM, ALCNet
    "blocks": (1, 1, 1),  # ACM, ALCNet
    "width": 4,  # MDvsFA generators
}
SIZE = 64


def small_kwargs(name: str) -> dict[str, object]:
    """The subset of :data:`SMALL_KWARGS` that model ``name``'s constructor accepts.

    Explicit signatures are inspected; for ``**kwargs`` builders (the DNANet variants forward to the
    class) each keyword is tried and kept if construction does not raise ``TypeError``.
    """
    params = inspect.signature(_MODELS[name]).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {k: v for k, v in SMALL_KWARGS.items() if k in params}
    accepted: dict[str, object] = {}
    for key, value in SMALL_KWARGS.items():
        try:
            create_model(name, **accepted, **{key: value})
        except TypeError:
            continue
        accepted[key] = value
    return accepted


def _outputs(out: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.fixture(params=list_models())
def name(request) -> str:
    return request.param


def test_registry_lists_the_families():
    names = list_models()
    assert names == sorted(names)
    for family in ("dnanet", "acm", "alcnet", "mdvsfa"):
        assert family in names


def test_eval_returns_input_size_logits(name):
    torch.manual_seed(0)
    model = create_model(name, **small_kwargs(name)).eval()
    divisor = model.size_divisor
    assert isinstance(divisor, int) and divisor >= 1 and SIZE % divisor == 0
    with torch.no_grad():
        out = model(torch.randn(1, 3, SIZE, SIZE))
    assert isinstance(out, torch.Tensor), f"{name}: eval mode must return one tensor"
    assert out.shape == (1, 1, SIZE, SIZE)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.std() > 0, f"{name}: constant output"


def test_train_forward_backward_reaches_parameters(name):
    torch.manual_seed(0)
    model = create_model(name, **small_kwargs(name)).train()
    x = torch.randn(1, 3, SIZE, SIZE)
    outs = _outputs(model(x))
    for o in outs:
        assert o.shape == (1, 1, SIZE, SIZE)
        assert torch.isfinite(o).all()
    # A random weighting so that no gradient cancels by symmetry.
    weight = torch.randn(1, 1, SIZE, SIZE)
    loss = sum((o * weight).mean() for o in outs)
    loss.backward()
    params = list(model.parameters())
    grads = [p.grad for p in params]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    # The input layer (registered first) gets a gradient: it flowed through the whole network.
    assert grads[0] is not None and grads[0].abs().sum() > 0, f"{name}: no gradient at the input layer"
    with_grad = sum(g is not None and bool(g.abs().sum() > 0) for g in grads)
    # MDvsFA's discriminator is not on the forward path; everything else must be.
    assert with_grad >= 0.5 * len(params)


def test_single_input_channel(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, **small_kwargs(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, SIZE, SIZE))
    assert out.shape == (2, 1, SIZE, SIZE)
    assert torch.isfinite(out).all()
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, SIZE, SIZE))  # the layer really is 1-channel


def test_unknown_name_lists_valid_models():
    with pytest.raises(ValueError) as err:
        create_model("no_such_net")
    message = str(err.value)
    assert "no_such_net" in message
    for valid in list_models():
        assert valid in message
