"""Your own model, norm and data from `_target_` (docs/your-own-model.md), at smoke sizes."""

from __future__ import annotations

import textwrap

import pytest
import torch
from conftest import cli, read_metrics, read_status
from torch import nn

from smoothbench.build import build_data_from_config, build_model_from_config
from smoothbench.config import ConfigError, validate
from smoothbench.data import DataError
from smoothbench.models import numbered_layers
from smoothbench.models.custom import inferred_layers
from smoothbench.train import train

FAST = ("steps=1", "batch_size=8", "eval_every=1", "checkpoint_every=1", "eval_batch_size=128")
PROBED = (  # at step 0, and the final one where a probe has it
    "probes=default",
    "probes.bn.schedule.kind=every",
    "probes.ics.schedule.kind=every",
    "probes.ics.layers=[1]",
)
RESNET18 = ("model=custom", "model._target_=torchvision.models.resnet18")

USER_MODULE = '''
import torch
from torch import nn


class Scale(nn.Module):
    """A norm of the user's own: x / RMS over everything but the batch, times a learned gain."""

    def __init__(self, num_features, eps=1e-6):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(num_features))
        self.eps = eps

    def forward(self, x):
        rms = x.pow(2).mean(dim=tuple(range(1, x.dim())), keepdim=True).add(self.eps).sqrt()
        return x / rms * self.gain.view(1, -1, *[1] * (x.dim() - 2))


def tiny(num_classes, norm_layer, width=4):
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), norm_layer(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )


def images(n=48, size=8, classes=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2 * n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.arange(2 * n) % classes
    return x[:n], y[:n], x[n:], y[n:]


def not_a_module(num_classes=10):
    return [num_classes]
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`mynets.py` in a folder on sys.path (and PYTHONPATH, for the CLI)."""
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "mynets.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_torchvision_resnet18_trains_and_probes(smoke, tmp_path):
    cfg = smoke(*RESNET18, "norm=batch", *FAST, *PROBED)
    assert train(cfg, tmp_path)["state"] == "finished"
    rows = read_metrics(tmp_path)
    keys = {k for r in rows for k in r}
    # 17 conv+bn layers and 3 projection shortcuts (conv+bn), in named_modules() order
    assert {"act/layer1/mean", "act/layer20/mean", "bn/layer20/grad_ratio"} <= keys
    assert {"ics/layer1/l2", "ics/layer1/cosine"} <= keys
    model = build_model_from_config(cfg, num_classes=7)
    assert model.fc.out_features == 7
    refs = numbered_layers(model)
    assert [(r.transform_name, r.norm_name) for r in refs[:2]] == [
        ("conv1", "bn1"),
        ("layer1.0.conv1", "layer1.0.bn1"),
    ]
    assert all(isinstance(r.norm, nn.BatchNorm2d) and r.output is r.norm for r in refs)


def test_norm_none_swaps_the_norm_layers_of_resnet18(smoke):
    model = build_model_from_config(smoke(*RESNET18, "norm=none"))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    refs = numbered_layers(model)
    assert len(refs) == 20 and all(isinstance(r.norm, nn.Identity) for r in refs)
    noisy = build_model_from_config(smoke(*RESNET18, "norm=noisy_batch"))
    layer_ids = sorted(m.layer_id for m in noisy.modules() if hasattr(m, "noise_step"))
    assert layer_ids == list(range(20))  # numbered for their per-layer noise streams


def test_a_users_module_on_the_path_trains_with_its_own_norm_and_data(smoke, tmp_path, user_module):
    cfg = smoke(
        "model=custom",
        "model._target_=mynets.tiny",
        "+model.kwargs.width=6",
        "norm=custom",
        "norm._target_=mynets.Scale",
        "data=custom",
        "data._target_=mynets.images",
        "data.image_size=16",
        *FAST,
        *PROBED,
    )
    model = build_model_from_config(cfg, num_classes=3)
    refs = numbered_layers(model)
    assert [(r.transform_name, r.norm_name) for r in refs] == [("0", "1")]
    assert type(refs[0].norm).__name__ == "Scale" and refs[0].norm.gain.shape == (6,)
    assert train(cfg, tmp_path / "run")["state"] == "finished"
    keys = set(read_metrics(tmp_path / "run")[0])
    assert {"act/layer1/mean", "ics/layer1/l2"} <= keys and not any("bn/" in k for k in keys)


def test_the_command_line_finds_a_module_on_pythonpath(tmp_path, user_module):
    run_dir = tmp_path / "run"
    args = ["scale=smoke", *FAST, "model=custom", "model._target_=mynets.tiny", "norm=none"]
    out = cli(*args, f"hydra.run.dir={run_dir}", env_extra={"PYTHONPATH": str(user_module)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert read_status(run_dir)["state"] == "finished"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ("model=custom", "model._target_=x.y"),
            "model._target_='x.y': cannot import it (ModuleNotFoundError: No module named 'x')",
        ),
        (
            ("model=custom", "model._target_=torchvision.models.resnet99"),
            "model._target_='torchvision.models.resnet99': cannot import it: module "
            "'torchvision.models' has no 'resnet99'",
        ),
        (("model=custom", "model._target_=math.pi"), "model._target_='math.pi' is a float, not"),
        (
            ("model=custom", "model._target_=mynets.not_a_module"),
            "model._target_='mynets.not_a_module' returned a value of type list; it must return",
        ),
        (
            ("norm=custom", "norm._target_=mynets.not_a_module"),
            "norm._target_='mynets.not_a_module' returned a value of type list",
        ),
        (("data=custom", "data._target_=mynets"), "data._target_='mynets' must be a dotted path"),
        (("model=custom",), "model=custom needs model._target_=PKG.FN, an importable callable"),
        (
            ("model=custom", "model._target_=mynets.tiny", "+model.width2=3"),
            "unknown key 'model.width2'; a keyword argument of model._target_ goes in "
            "model.kwargs: +model.kwargs.width2=...",
        ),
        (("+model.kwargs.a=1",), "model.kwargs is for model=custom only; got model=vgg11"),
        (("data.image_size=64",), "model=vgg11 takes 32x32 images"),
    ],
)
def test_bad_targets_are_refused_in_one_line(smoke, user_module, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(smoke(*overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_data_of_the_wrong_type_is_refused(smoke, user_module):
    cfg = smoke("data=custom", "data._target_=mynets.not_a_module")
    with pytest.raises(DataError, match=r"^data._target_='mynets.not_a_module' returned a list"):
        build_data_from_config(cfg)


def test_custom_tensors_are_resized_to_image_size(smoke, user_module):
    data = build_data_from_config(
        smoke("data=custom", "data._target_=mynets.images", "data.image_size=16")
    )
    assert data.train_x.shape == (48, 3, 16, 16) and data.train_x.dtype == torch.uint8
    assert data.num_classes == 3 and data.mean.shape == (3,)
    kept = build_data_from_config(
        smoke("data=custom", "data._target_=mynets.images", "data.image_size=8")
    )
    from mynets import images

    assert torch.equal(kept.train_x, images()[0])  # already that size: unchanged


def test_custom_datasets_of_pil_images(tmp_path, monkeypatch, smoke):
    (tmp_path / "mysets.py").write_text(
        textwrap.dedent(
            """
            from PIL import Image

            class Gray:
                classes = ["a", "b", "c", "d"]

                def __len__(self):
                    return 5

                def __getitem__(self, i):
                    return Image.new("L", (10, 12), color=40 * i), i % 2

            def both():
                return Gray(), Gray()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = build_data_from_config(
        smoke("data=custom", "data._target_=mysets.both", "data.image_size=20")
    )
    assert data.train_x.shape == (5, 3, 20, 20) and data.num_classes == 4
    assert data.train_x[3, :, 5, 5].tolist() == [120, 120, 120]
    assert data.train_y.tolist() == [0, 1, 0, 1, 0]


def test_digits_at_another_image_size(smoke):
    data = build_data_from_config(smoke("model=resnet20", "data.image_size=48"))
    assert data.train_x.shape[1:] == (3, 48, 48)


def test_layer_rule_without_layer_pairs():
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert inferred_layers(plain) == [("0", "0"), ("2", "2")]  # no norm: every Linear alone
    normed = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2)
    )
    assert inferred_layers(normed) == [("0", "1")]  # the classifier has no norm: not numbered
    refs = numbered_layers(plain)
    assert [r.output_name for r in refs] == ["0", "2"] and refs[1].norm is plain[2]
