"""XASBlock config validation, layer order, output shape, and a tiny overfit check."""

import pytest
import torch
from torch import nn

from xas_data.errors import XASDataError
from xas_models import ModelError, XASBlock, XASBlockConfig, available_models, build_model
from xas_models.registry import register_model


def test_model_error_is_xas_data_error():
    assert issubclass(ModelError, XASDataError)


def test_defaults():
    cfg = XASBlockConfig(input_dim=8)
    assert cfg.output_dim == 141
    assert cfg.hidden_widths == [400, 400]
    assert cfg.dropout == 0.5
    assert cfg.batchnorm is True


def test_unknown_key_named():
    with pytest.raises(
        ModelError, match=r"unknown key 'hiden_widths'.*allowed keys:.*hidden_widths"
    ):
        XASBlock.from_config({"input_dim": 8, "hiden_widths": [4]})


def test_dropout_one_rejected():
    with pytest.raises(ModelError, match=r"'dropout'.*\[0, 1\)"):
        XASBlock.from_config({"input_dim": 8, "dropout": 1.0})


@pytest.mark.parametrize("widths", [[0], [16, -3]])
def test_bad_widths_rejected(widths):
    with pytest.raises(ModelError, match=r"'hidden_widths'.*> 0"):
        XASBlock.from_config({"input_dim": 8, "hidden_widths": widths})


def test_missing_and_nonpositive_input_dim():
    with pytest.raises(ModelError, match="missing key 'input_dim'"):
        XASBlock.from_config({})
    with pytest.raises(ModelError, match="'input_dim'.*integer > 0"):
        XASBlock.from_config({"input_dim": 0})


def test_empty_widths_is_linear_model():
    model = XASBlock.from_config({"input_dim": 5, "output_dim": 7, "hidden_widths": []})
    assert [type(m) for m in model.net] == [nn.Linear, nn.Softplus]


def test_layer_order_and_output():
    model = XASBlock.from_config(
        {"input_dim": 12, "output_dim": 20, "hidden_widths": [16, 8], "dropout": 0.1}
    )
    kinds = [type(m) for m in model.net]
    assert kinds == [
        nn.Linear, nn.BatchNorm1d, nn.SiLU, nn.Dropout,
        nn.Linear, nn.BatchNorm1d, nn.SiLU, nn.Dropout,
        nn.Linear, nn.Softplus,
    ]  # fmt: skip
    assert model.net[0].in_features == 12 and model.net[4].out_features == 8
    assert model.net[-2].out_features == 20
    assert model.net[3].p == 0.1
    torch.manual_seed(0)
    y = model(torch.randn(6, 12))
    assert y.shape == (6, 20)
    assert (y >= 0).all()


def test_no_batchnorm():
    model = XASBlock.from_config({"input_dim": 4, "hidden_widths": [8], "batchnorm": False})
    assert [type(m) for m in model.net] == [nn.Linear, nn.SiLU, nn.Dropout, nn.Linear, nn.Softplus]


def test_wrong_feature_shape():
    model = XASBlock.from_config({"input_dim": 4, "hidden_widths": [8]})
    with pytest.raises(ModelError, match=r"\(batch, 4\)"):
        model(torch.randn(3, 5))


def test_registry():
    assert "xasblock" in available_models()
    model = build_model("xasblock", {"input_dim": 3, "hidden_widths": [4]})
    assert isinstance(model, XASBlock)
    with pytest.raises(ModelError, match="unknown model architecture 'nope'.*'xasblock'"):
        build_model("nope", {})
    with pytest.raises(ModelError, match="already registered"):

        @register_model("xasblock")
        class Other(nn.Module):
            @classmethod
            def from_config(cls, config):
                return cls()


def test_overfit_tiny():
    torch.manual_seed(0)
    x = torch.randn(16, 10)
    y = torch.rand(16, 30)
    model = XASBlock.from_config(
        {"input_dim": 10, "output_dim": 30, "hidden_widths": [32, 32], "dropout": 0.0}
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.MSELoss()
    model.train()
    with torch.no_grad():
        start = loss_fn(model(x), y).item()
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        end = loss_fn(model(x), y).item()
    assert end < start / 10, (start, end)


def test_autocast_bf16_keeps_standardisation_batchnorm_and_output_in_fp32():
    """Mixed precision as the trainer runs it on GPUs (fp32 weights, bf16 autocast): features
    far from zero standardise in fp32 (in bf16, 1000 + 0.1 N(0, 1) keeps no digit of the
    noise), BatchNorm and the output layer run in fp32, and the result matches fp32."""
    torch.manual_seed(0)
    x = 1000 + 0.1 * torch.randn(64, 8)
    model = XASBlock.from_config(
        {"input_dim": 8, "output_dim": 30, "hidden_widths": [32, 32], "dropout": 0.0}
    )
    model.set_input_scaling(x.mean(0), x.std(0))
    ref = model(x)
    with torch.autocast("cpu", torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.03, rtol=0)  # bf16 matmuls: ~0.005
    out.sum().backward()
    assert {p.grad.dtype for p in model.parameters()} == {torch.float32}
    assert model.net[1].running_mean.dtype == torch.float32
    assert model.bfloat16()(x.bfloat16()).dtype == torch.bfloat16  # a model cast as a whole
