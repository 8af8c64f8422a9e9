import pytest
import torch

from soundscene.config import Config
from soundscene.errors import ConfigError
from soundscene.core.models import PaperCNN, aggregate_patches, available_models, build_model, register_model


def _config(**model):
    return Config().with_overrides({f"model.{k}": v for k, v in model.items()})


def test_paper_cnn_shapes_and_layers():
    net = build_model(Config(), n_classes=10)
    out = net(torch.randn(4, 1, 40, 100))
    assert out.shape == (4, 10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted({m.kernel_size for m in convs}) == [(1, 1), (3, 3)]
    assert [m.out_channels for m in convs] == [32, 32, 64, 64, 128, 128]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in net.modules())
    probs = net.eval().predict_proba(torch.randn(2, 1, 40, 100))
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


def test_registry():
    assert "paper_cnn" in available_models()
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'"):
        build_model(_config(name="resnet9000"), n_classes=3)

    @register_model("tiny_test_net", params={"width": 4})
    def _tiny(params, *, in_channels, n_classes):
        return PaperCNN(in_channels=in_channels, n_classes=n_classes, widths=(params["width"],) * 3)

    stereo = Config().with_overrides({"audio.channels": 2, "model.name": "tiny_test_net",
                                      "model.params.width": 6, "features.n_mels": 16})
    net = build_model(stereo, n_classes=3)
    assert net(torch.randn(1, 2, 16, 16)).shape == (1, 3)
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)][0] == 6
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_net")(_tiny)


def test_each_model_validates_its_own_parameters():
    net = build_model(_config(**{"params.widths": [8, 16, 24], "params.dropout": 0.1}), n_classes=4)
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)] == [8, 8, 16, 16, 24, 24]
    with pytest.raises(ConfigError, match=r"model\.params\.depth.*takes \['dropout', 'widths'\]"):
        build_model(_config(**{"params.depth": 3}), n_classes=4)
    with pytest.raises(ConfigError, match=r"model\.params\.widths: must be three"):
        build_model(_config(**{"params.widths": [8, 16]}), n_classes=4)
    with pytest.raises(ConfigError, match=r"model\.params\.dropout: expected a value like 0\.5"):
        build_model(_config(**{"params.dropout": "high"}), n_classes=4)


def test_normalisation_is_learnt_per_row():
    net = build_model(Config().with_overrides({"features.n_mels": 3, "features.n_mfcc": 3}), n_classes=2)
    feats = torch.randn(10, 1, 3, 50) * torch.tensor([1.0, 5.0, 10.0]).view(1, 1, 3, 1) + 7
    net.set_normalisation(feats)
    torch.testing.assert_close(net.feature_mean.flatten(), feats.mean(dim=(0, 3)).flatten())


def test_aggregation_rules():
    p = torch.tensor([[[0.6, 0.4], [0.6, 0.4], [0.0, 1.0]]])
    torch.testing.assert_close(aggregate_patches(p, "mean"), torch.tensor([[0.4, 0.6]]))
    torch.testing.assert_close(aggregate_patches(p, "vote"), torch.tensor([[2 / 3, 1 / 3]]))
    mx = aggregate_patches(p, "max")
    torch.testing.assert_close(mx, torch.tensor([[0.375, 0.625]]))
    lm = aggregate_patches(p, "log_mean")
    assert lm[0, 1] > 0.99  # one confident patch dominates the geometric mean
    with pytest.raises(ConfigError):
        aggregate_patches(p, "median")


def _bright_band_patches(*, n: int = 64, rows: int = 24, frames: int = 32, seed: int = 0):
    """n random patches of two classes; class 1 has a bright band of rows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, rows, frames, generator=g)
    y = torch.arange(n) % 2
    x[y == 1, :, rows // 3:rows // 3 + 4, :] += 3.0
    return x, y


@pytest.mark.parametrize("name", ["rf_resnet", "mobile"])
def test_new_networks_learn_a_bright_band(name):
    torch.manual_seed(0)
    cfg = Config().with_overrides({"model.name": name, "features.n_mels": 24})
    net = build_model(cfg, n_classes=2).train()
    x, y = _bright_band_patches()
    opt = torch.optim.Adam(net.parameters(), lr=0.003)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses


@pytest.mark.parametrize("name", ["rf_resnet", "mobile"])
@pytest.mark.parametrize("channels, rows, frames", [(1, 40, 100), (2, 13, 37), (1, 8, 8), (2, 8, 9)])
def test_new_networks_take_any_patch_and_are_deterministic(name, channels, rows, frames):
    cfg = Config().with_overrides({"model.name": name, "audio.channels": channels, "features.n_mels": rows,
                                   "features.n_mfcc": min(rows, 13)})
    net = build_model(cfg, n_classes=5)
    x = torch.randn(3, channels, rows, frames)
    assert net(x).shape == (3, 5)
    net.eval()
    torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("name, key, value, match", [
    ("rf_resnet", "width", 2, r"model\.params\.width: must be an integer in 4\.\.512"),
    ("rf_resnet", "rho", 13, r"model\.params\.rho: must be an integer in 0\.\.12"),
    ("rf_resnet", "limited_kernel", "3x1", r"model\.params\.limited_kernel: must be one of"),
    ("rf_resnet", "dropout", 1.0, r"model\.params\.dropout: must be in \[0, 1\)"),
    ("rf_resnet", "width", 3.5, r"model\.params\.width: expected a value like 32"),
    ("mobile", "width", 0.1, r"model\.params\.width: must be in 0\.25\.\.4"),
    ("mobile", "expansion", 0, r"model\.params\.expansion: must be an integer in 1\.\.8"),
    ("mobile", "dropout", -0.1, r"model\.params\.dropout: must be in \[0, 1\)"),
    ("mobile", "depth", 3, r"model\.params\.depth.*takes \['dropout', 'expansion', 'width'\]"),
])
def test_new_networks_validate_their_parameters(name, key, value, match):
    with pytest.raises(ConfigError, match=match):
        build_model(_config(name=name, **{f"params.{key}": value}), n_classes=3)


def test_new_networks_parameters_take_effect():
    from soundscene.core.models import MobileNet, ResidualBlock, RFResNet

    net = build_model(_config(name="rf_resnet", **{"params.width": 8, "params.rho": 3}), n_classes=3).backbone
    assert isinstance(net, RFResNet)
    kernels = [block.body[i][0].kernel_size for block in net.modules() if isinstance(block, ResidualBlock)
               for i in (0, 1)]
    assert kernels == [(3, 3)] * 3 + [(1, 1)] * 9
    assert max(m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)) == 32
    assert net.dropout.p == 0.2
    wide = build_model(_config(name="mobile", **{"params.width": 2.0}), n_classes=3).backbone
    assert isinstance(wide, MobileNet)
    assert sum(p.numel() for p in wide.parameters()) > 2 * sum(
        p.numel() for p in build_model(_config(name="mobile"), n_classes=3).parameters())


def test_rf_resnet_receptive_field_follows_rho():
    from soundscene.core.models import RFResNet

    table = [10, 14, 18, 22, 26, 34, 42, 50, 58, 74, 90, 106, 122]  # as documented in RFResNet
    for rho, rows in enumerate(table):
        net = RFResNet(in_channels=1, n_classes=2, width=4, rho=rho)
        assert net.receptive_field == (rows, rows)
    wide_in_time = RFResNet(in_channels=1, n_classes=2, width=4, rho=4, limited_kernel="1x3")
    assert wide_in_time.receptive_field == (26, 122)


@pytest.mark.parametrize("rho, limited_kernel", [(0, "1x1"), (4, "1x1"), (6, "1x1"), (2, "1x3")])
def test_rf_resnet_receptive_field_is_the_gradient_support(rho, limited_kernel):
    from soundscene.core.models import RFResNet

    torch.manual_seed(0)
    net = RFResNet(in_channels=1, n_classes=2, width=8, rho=rho, limited_kernel=limited_kernel).eval()
    for stage in net.stages:  # average pooling spreads gradients over its whole window, as the field counts
        stage[0] = torch.nn.AvgPool2d(2)
    x = torch.randn(1, 1, 128, 256, requires_grad=True)
    out = net.stages(net.stem(x))
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    frames = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert (int(rows[-1] - rows[0]) + 1, int(frames[-1] - frames[0]) + 1) == net.receptive_field
