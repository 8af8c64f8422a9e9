import pytest
import torch

from soundscene.config import ModelConfig
from soundscene.errors import ConfigError
from soundscene.models import PaperCNN, aggregate_patches, available_models, build_model, register_model


def test_paper_cnn_shapes_and_layers():
    net = build_model(ModelConfig(), in_channels=1, n_rows=40, n_classes=10)
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
        build_model(ModelConfig(name="resnet9000"), in_channels=1, n_rows=40, n_classes=3)

    @register_model("tiny_test_net")
    def _tiny(config, *, in_channels, n_classes):
        return PaperCNN(in_channels=in_channels, n_classes=n_classes, widths=(4, 4, 4))

    net = build_model(ModelConfig(name="tiny_test_net"), in_channels=2, n_rows=16, n_classes=3)
    assert net(torch.randn(1, 2, 16, 16)).shape == (1, 3)
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_net")(_tiny)


def test_normalisation_is_learnt_per_row():
    net = build_model(ModelConfig(), in_channels=1, n_rows=3, n_classes=2)
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
