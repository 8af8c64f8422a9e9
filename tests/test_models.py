import pytest
import torch

from soundscene.config import Config
from soundscene.errors import ConfigError
from soundscene.models import PaperCNN, aggregate_patches, available_models, build_model, register_model


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
