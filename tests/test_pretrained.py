"""Pretrained backbones (``backbone.pretrained``): each converter against the source model itself, inflation, errors, fine-tuning.

Every source is built here with random weights (nothing can be downloaded) and saved in its own
format and place: torchvision's ``.pth`` in torch.hub's cache under ``TORCH_HOME``, MONAI's
Swin-UNETR checkpoints as the bundle and ``model_swinvit.pt`` hold them, torchaudio's Conformer as
a state dict, a timm model as a Hub-style folder (``tests/hub/test_pretrained_hub.py`` serves the
full-size timm models through a local Hub mirror). Parity: polyhead's features on the same input
as the source's, max abs difference <= 1e-5 at every level.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import polyhead
from polyhead.backbones import ConformerEncoder, ConvNeXt, SwinBackbone
from polyhead.errors import ConfigError, ModelLoadError
from polyhead.pretrained import PretrainedSource, load_pretrained, load_pretrained_backbone
from polyhead import registry
from polyhead.registry import BACKBONES, build, describe_backbone
from polyhead.training import TrainingArguments, parameter_groups

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

TOLERANCE = 1e-5
#: ConvNeXt-T and Swin-T as polyhead configs (what the sources fit)
CONVNEXT_T = {"spatial_dims": 2, "in_channels": 3, "depths": (3, 3, 9, 3), "dims": (96, 192, 384, 768)}
SWIN_T = {"spatial_dims": 2, "in_channels": 3, "feature_size": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24),
          "window_size": 7, "patch_size": 4, "patch_norm": True}


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights that all matter: layer scales and window biases away from their near-zero initialisation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("gamma", "layer_scale")):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) * 0.9 + 0.1)
            elif "relative_position_bias_table" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
            elif "norm" in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def channel_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the channels of ``(B, C, *spatial)`` without affine weights (a new output norm at its init)."""
    return F.layer_norm(x.movedim(1, -1), x.shape[1:2], eps=eps).movedim(-1, 1)


def max_diffs(expected, got) -> list[float]:
    return [float((e - g).abs().max()) for e, g in zip(expected, got, strict=True)]


def stage_outputs(swin: SwinBackbone) -> tuple[dict, list]:
    """Hooks that record each stage's last Swin block output (before its patch merging): ``(B, *spatial, C)``."""
    found: dict[int, torch.Tensor] = {}
    hooks = [getattr(swin.encoder, f"layers{i + 1}")[0].blocks[-1].register_forward_hook(lambda m, a, out, i=i: found.__setitem__(i, out))
             for i in range(4)]
    return found, hooks


# --------------------------------------------------------------------------- timm (a Hub-style folder)


def timm_swin_parity(source: torch.nn.Module, ours: SwinBackbone, x: torch.Tensor) -> list[float]:
    """Levels 0-3: timm's patch embedding and merged patches; then each stage's blocks against timm's stage output;
    level 4 is polyhead's (MONAI's) own merging after the last stage, applied to timm's last stage."""
    taps = {}
    hooks = [source.patch_embed.register_forward_hook(lambda m, a, out: taps.__setitem__(0, out))]
    hooks += [source.layers[i].downsample.register_forward_hook(lambda m, a, out, i=i: taps.__setitem__(i, out)) for i in (1, 2, 3)]
    stages, our_hooks = stage_outputs(ours)
    with torch.no_grad():
        timm_stages = source.forward_intermediates(x, intermediates_only=True)  # (B, C, H, W) per stage
        got = ours(x).feature_maps
        last = ours.encoder.layers4[0].downsample(timm_stages[3].permute(0, 2, 3, 1))
    for hook in hooks + our_hooks:
        hook.remove()
    expected = [channel_norm(taps[i].permute(0, 3, 1, 2), 1e-5) for i in range(4)] + [channel_norm(last.permute(0, 3, 1, 2), 1e-5)]
    return max_diffs(expected, got) + max_diffs(timm_stages, [stages[i].permute(0, 3, 1, 2) for i in range(4)])


def timm_convnext_parity(source: torch.nn.Module, ours: ConvNeXt, x: torch.Tensor) -> list[float]:
    with torch.no_grad():
        expected = [channel_norm(f, 1e-6) for f in source.forward_intermediates(x, intermediates_only=True)]
        return max_diffs(expected, ours(x).feature_maps)


def test_timm_convnext_tiny_parity(tmp_path):
    """timm's ``convnext_tiny`` as its Hub repos hold it (``save_for_hf``: ``model.safetensors`` + ``config.json``)."""
    from timm.models import save_for_hf

    torch.manual_seed(0)
    source = perturb(timm.create_model("convnext_tiny", pretrained=False), seed=4)
    save_for_hf(source, tmp_path / "convnext_tiny.fb_in1k", safe_serialization=True)
    ours = ConvNeXt(**CONVNEXT_T).eval()
    report = load_pretrained(ours, str(tmp_path / "convnext_tiny.fb_in1k"))
    assert report["family"] == "timm-convnext" and report["loaded"] == 178
    assert report["ignored"] == ["head.fc.bias", "head.fc.weight", "head.norm.bias", "head.norm.weight"]
    diffs = timm_convnext_parity(source, ours, torch.randn(1, 3, 224, 224))
    print("timm ConvNeXt-T max abs diff per level:", diffs)
    assert max(diffs) <= TOLERANCE


def test_timm_swin_tiny_parity(tmp_path):
    """timm's ``swin_tiny_patch4_window7_224`` at 448 px (every map a multiple of the 7-wide window)."""
    from timm.models import save_for_hf

    torch.manual_seed(0)
    source = perturb(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=448), seed=5)
    save_for_hf(source, tmp_path / "swin_tiny", safe_serialization=True)
    ours = SwinBackbone(**SWIN_T).eval()
    report = load_pretrained(ours, str(tmp_path / "swin_tiny"))
    assert report["family"] == "timm-swin" and report["loaded"] == 169 and report["ignored"] == ["head.fc.bias", "head.fc.weight", "norm.bias", "norm.weight"]
    assert report["new"] == [f"encoder.layers4.0.downsample.{n}" for n in ("norm.bias", "norm.weight", "reduction.weight")]
    diffs = timm_swin_parity(source, ours, torch.randn(1, 3, 448, 448))
    print("timm Swin-T max abs diff (5 levels, then 4 stage outputs):", diffs)
    assert max(diffs) <= TOLERANCE


# --------------------------------------------------------------------------- torchvision (TORCH_HOME hub cache)


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """An empty ``TORCH_HOME``: torchvision weights resolve from its ``hub/checkpoints`` only."""
    home = tmp_path_factory.mktemp("torch-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        yield home


def place_torchvision(torch_home: Path, weights_name: str, model: torch.nn.Module) -> Path:
    """Save ``model``'s state dict where torchvision's ``load_state_dict_from_url`` caches ``weights_name``."""
    url = torchvision.models.get_weight(weights_name).url
    path = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def test_torchvision_convnext_tiny_parity(torch_home):
    torch.manual_seed(0)
    source = perturb(torchvision.models.convnext_tiny(), seed=1)
    place_torchvision(torch_home, "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", source)
    ours = ConvNeXt(**CONVNEXT_T).eval()
    report = load_pretrained(ours, "torchvision:ConvNeXt_Tiny_Weights.IMAGENET1K_V1")
    assert report["family"] == "torchvision-convnext" and report["loaded"] == 178
    assert report["new"] == [f"norms.{i}.{p}" for i in range(4) for p in ("bias", "weight")]
    assert report["ignored"] == ["classifier.0.bias", "classifier.0.weight", "classifier.2.bias", "classifier.2.weight"]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected, h = [], x
        for i, layer in enumerate(source.features):
            h = layer(h)
            if i % 2:
                expected.append(channel_norm(h, 1e-6))  # polyhead's new output norms start as plain LayerNorms
        got = ours(x).feature_maps
    diffs = max_diffs(expected, got)
    print("torchvision ConvNeXt-T max abs diff per level:", diffs)
    assert max(diffs) <= TOLERANCE


def test_torchvision_swin_t_parity(torch_home):
    """Swin-T at 448 px (every map a multiple of the 7-wide window): levels 0-3 are torchvision's patch embedding and
    merged patches; each stage's blocks match torchvision's stage output; level 4 is polyhead's own last merging."""
    torch.manual_seed(0)
    source = perturb(torchvision.models.swin_t(), seed=2)
    place_torchvision(torch_home, "Swin_T_Weights.IMAGENET1K_V1", source)
    ours = SwinBackbone(**SWIN_T).eval()
    report = load_pretrained(ours, "torchvision:Swin_T_Weights.IMAGENET1K_V1")
    assert report["family"] == "torchvision-swin" and report["loaded"] == 169
    assert report["new"] == [f"encoder.layers4.0.downsample.{n}" for n in ("norm.bias", "norm.weight", "reduction.weight")]
    assert report["ignored"] == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    stages, hooks = stage_outputs(ours)
    x = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        outputs, h = [], x
        for layer in source.features:
            h = layer(h)
            outputs.append(h)  # (B, H, W, C)
        got = ours(x).feature_maps
        last = ours.encoder.layers4[0].downsample(outputs[7])  # polyhead's new merging on torchvision's last stage
    for hook in hooks:
        hook.remove()
    expected = [channel_norm(outputs[i].permute(0, 3, 1, 2), 1e-5) for i in (0, 2, 4, 6)] + [channel_norm(last.permute(0, 3, 1, 2), 1e-5)]
    diffs = max_diffs(expected, got) + max_diffs([outputs[i] for i in (1, 3, 5, 7)], [stages[i] for i in range(4)])
    print("torchvision Swin-T max abs diff (5 levels, then 4 stage outputs):", diffs)
    assert max(diffs) <= TOLERANCE


# --------------------------------------------------------------------------- MONAI Swin-UNETR


SWIN_UNETR = {"in_channels": 1, "feature_size": 12, "depths": (2, 2, 2, 2), "num_heads": (3, 6, 12, 24)}


@pytest.fixture(scope="module")
def swin_unetr():
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(0)
    return perturb(SwinUNETR(in_channels=1, out_channels=14, feature_size=12), seed=3)


@pytest.fixture(scope="module")
def swin_unetr_features(swin_unetr) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """An input volume and the five maps of the source's own encoder (``swinViT``, normalised as Swin-UNETR does)."""
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return x, swin_unetr.swinViT(x, True)


def monai_parity(ours: SwinBackbone, features) -> list[float]:
    x, expected = features
    with torch.no_grad():
        return max_diffs(expected, ours(x).feature_maps)


def same_encoder(reference, swin_unetr) -> bool:
    """MONAI's own reader put the source's weights in ``reference.swinViT``: its features are the source's."""
    source = swin_unetr.swinViT.state_dict()
    return all(torch.equal(v, source[k]) for k, v in reference.swinViT.state_dict().items())


def test_monai_swin_unetr_supervised_bundle_parity(swin_unetr, swin_unetr_features, tmp_path):
    """The BTCV bundle's ``models/model.pt``: a whole SwinUNETR state dict; its ``swinViT.*`` is the backbone."""
    path = tmp_path / "models" / "model.pt"
    path.parent.mkdir()
    torch.save(swin_unetr.state_dict(), path)
    ours = SwinBackbone(spatial_dims=3, **SWIN_UNETR).eval()
    report = load_pretrained(ours, str(path))
    assert report["family"] == "monai-swin" and report["new"] == [] and report["adapted"] == []
    assert report["ignored"] and all(not k.startswith("swinViT.") for k in report["ignored"])  # the decoder
    diffs = monai_parity(ours, swin_unetr_features)
    print("MONAI Swin-UNETR (supervised bundle) max abs diff per level:", diffs)
    assert max(diffs) <= TOLERANCE


def test_monai_self_supervised_model_swinvit_parity(swin_unetr, swin_unetr_features, tmp_path):
    """``model_swinvit.pt``: ``{"state_dict": {"module.*"}}`` with timm-named MLPs, read as ``SwinUNETR.load_from`` reads it."""
    from monai.networks.nets import SwinUNETR

    encoder = {f"module.{k}".replace(".mlp.linear1.", ".mlp.fc1.").replace(".mlp.linear2.", ".mlp.fc2."): v
               for k, v in swin_unetr.swinViT.state_dict().items()}
    encoder["module.norm.weight"] = torch.ones(192)  # the pre-training's final norm: not part of the backbone
    path = tmp_path / "model_swinvit.pt"
    torch.save({"state_dict": encoder, "epoch": 100}, path)
    reference = SwinUNETR(in_channels=1, out_channels=14, feature_size=12).eval()
    reference.load_from(torch.load(path, weights_only=True))  # what MONAI reads from the same file
    assert same_encoder(reference, swin_unetr)
    ours = SwinBackbone(spatial_dims=3, **SWIN_UNETR).eval()
    report = load_pretrained(ours, str(path))
    assert report["ignored"] == ["module.norm.weight"] and report["new"] == []
    diffs = monai_parity(ours, swin_unetr_features)
    print("MONAI self-supervised model_swinvit.pt max abs diff per level:", diffs)
    assert max(diffs) <= TOLERANCE


def test_monai_self_supervised_encoder_layout_matches_filter_swinunetr(swin_unetr, swin_unetr_features, tmp_path):
    """The ``encoder.layersK.0.0.*`` layout that MONAI's ``filter_swinunetr`` reads (with ``copy_model_state``)."""
    from monai.networks.nets import SwinUNETR
    from monai.networks.nets.swin_unetr import filter_swinunetr
    from monai.networks.utils import copy_model_state

    weights = {}
    for key, value in swin_unetr.swinViT.state_dict().items():
        key = key if key.startswith("patch_embed") else key[:10] + "0." + key[10:]  # layers1.0.blocks -> layers1.0.0.blocks
        weights["encoder." + key] = value
    weights["encoder.mask_token"] = torch.zeros(1, 1, 12)
    weights["out.conv.conv.weight"] = torch.zeros(1, 12, 1, 1, 1)
    path = tmp_path / "ssl_pretrained_weights.pth"
    torch.save({"model": weights}, path)
    reference = SwinUNETR(in_channels=1, out_channels=14, feature_size=12).eval()
    copy_model_state(reference, torch.load(path, weights_only=True)["model"], filter_func=filter_swinunetr)
    assert same_encoder(reference, swin_unetr)
    ours = SwinBackbone(spatial_dims=3, **SWIN_UNETR).eval()
    report = load_pretrained(ours, str(path))
    assert report["ignored"] == ["encoder.mask_token", "out.conv.conv.weight"] and report["new"] == []
    diffs = monai_parity(ours, swin_unetr_features)
    print("MONAI self-supervised encoder.* layout max abs diff per level:", diffs)
    assert max(diffs) <= TOLERANCE


# --------------------------------------------------------------------------- torchaudio Conformer


def test_torchaudio_conformer_parity(tmp_path):
    from torchaudio.models import Conformer

    torch.manual_seed(0)
    source = Conformer(input_dim=32, num_heads=4, ffn_dim=64, num_layers=3, depthwise_conv_kernel_size=7, dropout=0.0)
    perturb(source)
    with torch.no_grad():  # BatchNorm statistics as after training
        for name, buffer in source.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_()
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    path = tmp_path / "conformer.pt"
    torch.save(source.state_dict(), path)
    ours = ConformerEncoder(dim=32, depth=3, num_heads=4, ffn_dim=64, kernel_size=7, dropout=0.0).eval()
    report = load_pretrained(ours, str(path))
    assert report["family"] == "torchaudio-conformer" and report["new"] == [] and report["ignored"] == []
    x, lengths = torch.randn(2, 20, 32), torch.tensor([20, 14])
    with torch.no_grad():
        expected, _ = source(x, lengths)
        got = ours(x, padding_mask=torch.arange(20)[None] >= lengths[:, None]).feature_maps[0]
    diff = float((expected - got).abs().max())
    print("torchaudio Conformer max abs diff:", diff)
    assert diff <= TOLERANCE


# --------------------------------------------------------------------------- a polyhead model's backbone


def test_polyhead_model_backbone_as_a_source(tmp_path):
    """``polyhead:<folder>`` (or a polyhead folder as it is) starts only the backbone: the adapter keeps its own init."""
    from polyhead.tasks.detection import DetectionTask, PolyheadForObjectDetection

    config = DetectionTask.example_config()
    torch.manual_seed(0)
    source = PolyheadForObjectDetection(config)
    source.save_pretrained(tmp_path / "detector")
    for name in (f"polyhead:{tmp_path / 'detector'}", str(tmp_path / "detector")):
        target = PolyheadForObjectDetection(DetectionTask.example_config())
        head_before = {k: v.clone() for k, v in target.adapter.state_dict().items()}
        target.config.backbone["pretrained"] = name
        report = load_pretrained_backbone(target)
        assert report["family"] == "polyhead" and report["new"] == [] and report["loaded"] == len(source.backbone.state_dict())
        assert all(torch.equal(v, source.backbone.state_dict()[k]) for k, v in target.backbone.state_dict().items())
        assert all(torch.equal(v, head_before[k]) for k, v in target.adapter.state_dict().items())


# --------------------------------------------------------------------------- 2D -> 3D and in_channels


SMALL_SWIN = {"feature_size": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 3, 4), "window_size": 4, "patch_size": 4, "patch_norm": True}
SMALL_CONVNEXT = {"depths": (1, 1, 1, 1), "dims": (8, 16, 24, 32)}


@pytest.fixture(scope="module")
def timm_folders(tmp_path_factory) -> dict[str, Path]:
    """Small timm ConvNeXt and Swin as Hub-style folders (``model.safetensors`` + ``config.json``, timm's own ``save_for_hf``)."""
    from timm.models import save_for_hf

    root = tmp_path_factory.mktemp("timm")
    torch.manual_seed(0)
    models = {
        "convnext": timm.create_model("convnext_tiny", pretrained=False, depths=SMALL_CONVNEXT["depths"], dims=SMALL_CONVNEXT["dims"]),
        "swin": timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=128, embed_dim=24, depths=(1, 1, 1, 1),
                                  num_heads=(1, 2, 3, 4), window_size=4),
    }
    for name, model in models.items():
        save_for_hf(perturb(model), root / name, safe_serialization=True)
    return {name: root / name for name in models}


def test_swin_inflated_to_3d_gives_the_2d_features_at_every_depth(timm_folders):
    two = SwinBackbone(spatial_dims=2, in_channels=3, **SMALL_SWIN).eval()
    load_pretrained(two, str(timm_folders["swin"]))
    with torch.no_grad():  # the 2D backbone's new last merging as well, so that all five levels compare
        two.encoder.layers4[0].downsample.norm.bias.normal_()
    path = timm_folders["swin"].parent / "swin2d.safetensors"
    save_file(two.state_dict(), path)  # polyhead's own (MONAI) names: read as a MONAI Swin
    x2 = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        expected = two(x2).feature_maps
    for downsample in ("merging", "mergingv2"):  # MONAI's two 3D sub-patch orders
        three = SwinBackbone(spatial_dims=3, in_channels=3, downsample=downsample, **SMALL_SWIN).eval()
        report = load_pretrained(three, str(path))
        assert report["new"] == [] and len(report["adapted"]) == 1 + 4 + 4 * 3  # patch embedding, window biases, mergings
        with torch.no_grad():
            got = three(x2.unsqueeze(2).expand(1, 3, 64, 128, 128)).feature_maps
        diffs = max_diffs([e.unsqueeze(2).expand_as(g) for e, g in zip(expected, got)], got)
        print(f"Swin 2D -> 3D ({downsample}) max abs diff per level, over every depth:", diffs)
        assert max(diffs) <= TOLERANCE


def test_convnext_inflated_to_3d(timm_folders):
    """``inflate="centre"``: the 2D features at every depth; ``"mean"`` (I3D): the same away from the depth borders,
    where the zero padding of the 7x7x7 depthwise kernels sees less of the volume."""
    two = ConvNeXt(spatial_dims=2, in_channels=3, **SMALL_CONVNEXT).eval()
    load_pretrained(two, str(timm_folders["convnext"]))
    x2 = torch.randn(1, 3, 64, 64)
    x3 = x2.unsqueeze(2).expand(1, 3, 64, 64, 64)
    with torch.no_grad():
        expected = two(x2).feature_maps
    centre = ConvNeXt(spatial_dims=3, in_channels=3, **SMALL_CONVNEXT).eval()
    report = load_pretrained(centre, {"source": str(timm_folders["convnext"]), "inflate": "centre"})
    assert len(report["adapted"]) == 4 + 4 and report["new"] == [f"norms.{i}.{p}" for i in range(4) for p in ("bias", "weight")]
    with torch.no_grad():
        got = centre(x3).feature_maps
    diffs = max_diffs([e.unsqueeze(2).expand_as(g) for e, g in zip(expected, got)], got)
    print("ConvNeXt 2D -> 3D (centre) max abs diff per level, over every depth:", diffs)
    assert max(diffs) <= TOLERANCE
    mean = ConvNeXt(spatial_dims=3, in_channels=3, **SMALL_CONVNEXT).eval()
    load_pretrained(mean, str(timm_folders["convnext"]))
    with torch.no_grad():
        first = mean(x3).feature_maps[0]  # depth 16 at stride 4: one 7-deep kernel reaches 3 slices from each border
    interior = float((first[:, :, 3:-3] - expected[0].unsqueeze(2)).abs().max())
    print("ConvNeXt 2D -> 3D (mean, I3D) level 0, depths 3..12 of 16:", interior)
    assert interior <= TOLERANCE


def test_other_input_channels_sum_or_repeat_the_rgb_filters(timm_folders):
    rgb = ConvNeXt(spatial_dims=2, in_channels=3, **SMALL_CONVNEXT).eval()
    load_pretrained(rgb, str(timm_folders["convnext"]))
    grey = ConvNeXt(spatial_dims=2, in_channels=1, **SMALL_CONVNEXT).eval()
    report = load_pretrained(grey, str(timm_folders["convnext"]))
    assert report["adapted"] == ["downsamples.0.0.weight: 3 -> 1 input channel (filters summed)"]
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        diffs = max_diffs(rgb(image.expand(1, 3, 64, 64)).feature_maps, grey(image).feature_maps)
    assert max(diffs) <= TOLERANCE  # a grey image seen by the RGB filters
    four = ConvNeXt(spatial_dims=2, in_channels=4, **SMALL_CONVNEXT).eval()
    report = load_pretrained(four, str(timm_folders["convnext"]))
    stem = four.downsamples[0][0].weight
    source = rgb.downsamples[0][0].weight
    assert torch.allclose(stem[:, :3], source * 3 / 4) and torch.allclose(stem[:, 3], source[:, 0] * 3 / 4)
    # MRI with one modality from a 2D ImageNet Swin: inflation and channels together
    mri = SwinBackbone(spatial_dims=3, in_channels=1, **SMALL_SWIN)
    report = load_pretrained(mri, str(timm_folders["swin"]))
    assert report["adapted"][-1] == ("encoder.patch_embed.proj.weight: 2D kernel -> 4x4x4 (repeated along depth / 4); "
                                     "3 -> 1 input channel (filters summed)")


# --------------------------------------------------------------------------- fine-tuning the detector


def timm_name(polyhead_name: str) -> str:
    """timm's name of a polyhead ConvNeXt tensor (written out independently of polyhead.pretrained)."""
    parts = polyhead_name.split(".")
    if parts[0] == "downsamples":
        return f"stem.{parts[2]}.{parts[3]}" if parts[1] == "0" else f"stages.{parts[1]}.downsample.{parts[2]}.{parts[3]}"
    block = {"depthwise": "conv_dw", "norm": "norm", "pointwise1": "mlp.fc1", "pointwise2": "mlp.fc2", "gamma": "gamma"}[parts[3]]
    return ".".join([f"stages.{parts[1]}.blocks.{parts[2]}", block, *parts[4:]])


@pytest.mark.slow
def test_fine_tuning_the_detector_from_a_timm_convnext(tmp_path):
    from safetensors.torch import load_file
    from timm.models import save_for_hf

    from polyhead.tasks.detection import DetectionTask

    torch.manual_seed(0)
    dims = (8, 16, 16, 32)
    source_dir = tmp_path / "convnext-timm"
    save_for_hf(perturb(timm.create_model("convnext_tiny", pretrained=False, depths=(1, 1, 1, 1), dims=dims)), source_dir, safe_serialization=True)
    (source_dir / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: timm\n---\n# a ConvNeXt\n")
    source = load_file(source_dir / "model.safetensors")
    backbone = {"type": "convnext", "spatial_dims": 2, "in_channels": 3, "depths": [1, 1, 1, 1], "dims": list(dims), "pretrained": str(source_dir)}
    options = {
        "model.image_size": 64, "model.backbone": backbone,
        "model.head": {"type": "fcos", "fpn_channels": 32, "num_convs": 1, "min_reduction": 8},
        "train.max_steps": 2, "train.batch_size": 4, "train.eval_batch_size": 40, "train.log_with": None, "train.progress_bar": False,
        "train.warmup_steps": 0, "train.backbone_lr": 1e-4, "train.layer_decay": 0.8, "train.output_dir": str(tmp_path / "run"),
    }
    # before the first step: the backbone holds the source's tensors, bit for bit
    task = DetectionTask()
    model = task.build_model(task.build_config({k[6:]: v for k, v in options.items() if k.startswith("model.") and k != "model.task"}, {}))
    report = load_pretrained_backbone(model)
    for name, tensor in model.backbone.state_dict().items():
        if not name.startswith("norms."):
            assert torch.equal(tensor, source[timm_name(name)]), name
    assert report["loaded"] == len(model.backbone.state_dict()) - 8 and report["licence"] == "apache-2.0"
    # and a run trains from there
    steps = []
    result = polyhead.train("configs/detection/convnext_tiny_fcos.py", cfg_options=options,
                            callbacks=[lambda trainer: steps.append(trainer.state.global_step)])
    assert steps == [1, 2] and result.metrics["global_step"] == 2
    recorded = result.metrics["pretrained"]
    assert recorded["source"] == str(source_dir) and recorded["family"] == "timm-convnext" and recorded["loaded"] == report["loaded"]
    assert json.loads((result.best_dir / "config.json").read_text())["backbone"]["pretrained"] == str(source_dir)
    card = (result.best_dir / "README.md").read_text()
    assert f"**Backbone pretrained:** `{source_dir}` (timm ConvNeXt), licence: apache-2.0" in card
    # the saved model loads without the source: its checkpoint holds the weights
    moved = tmp_path / "gone"
    source_dir.rename(moved)
    reloaded = polyhead.AutoModel.from_pretrained(result.best_dir)
    assert reloaded.config.backbone["pretrained"] == str(source_dir)


# --------------------------------------------------------------------------- bad sources


class _Opaque:
    """An object only full unpickling can rebuild."""


def test_bad_sources(tmp_path, timm_folders):
    convnext = lambda **kw: ConvNeXt(spatial_dims=2, in_channels=3, **{**SMALL_CONVNEXT, **kw})  # noqa: E731
    with pytest.raises(ModelLoadError, match=r"pretrained='/nowhere/model.safetensors': no such file or folder\. Expected a Hub repo id"):
        load_pretrained(convnext(), "/nowhere/model.safetensors")
    # a checkpoint of another architecture: a timm ResNet
    save_file(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict(), tmp_path / "resnet.safetensors")
    with pytest.raises(ModelLoadError, match=r"resnet.safetensors' holds tensors named .*: no checkpoint polyhead converts\. Expected one of: timm ConvNeXt"):
        load_pretrained(convnext(), str(tmp_path / "resnet.safetensors"))
    # a ConvNeXt for a Swin config, and a ConvNeXt of another size
    with pytest.raises(ModelLoadError, match=r"is a timm ConvNeXt checkpoint: it starts a `convnext` backbone, and this config's backbone is `swin`"):
        load_pretrained(SwinBackbone(spatial_dims=2, in_channels=3, **SMALL_SWIN), str(timm_folders["convnext"]))
    with pytest.raises(ModelLoadError, match=r"does not fit this `convnext` backbone .* have other shapes .* It fits "
                                             r"dict\(type='convnext', depths=\(1, 1, 1, 1\), dims=\(8, 16, 24, 32\)\)"):
        load_pretrained(convnext(dims=(8, 16, 24, 48)), str(timm_folders["convnext"]))
    with pytest.raises(ModelLoadError, match=r"have no place in this backbone"):
        load_pretrained(SwinBackbone(spatial_dims=2, in_channels=3, **{**SMALL_SWIN, "patch_norm": False}), str(timm_folders["swin"]))
    # pickles that need full unpickling, as a file and as a folder's pytorch_model.bin
    torch.save({"state_dict": convnext().state_dict(), "args": _Opaque()}, tmp_path / "trusted_only.pth")
    with pytest.raises(ModelLoadError, match=r"trusted_only.pth is a pickle that needs torch.load\(weights_only=False\).*Expected a .safetensors file"):
        load_pretrained(convnext(), str(tmp_path / "trusted_only.pth"))
    (tmp_path / "folder").mkdir()
    torch.save(_Opaque(), tmp_path / "folder" / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pytorch_model.bin is a pickle that needs torch.load\(weights_only=False\)"):
        load_pretrained(convnext(), str(tmp_path / "folder"))
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"weights.npz is not a weights file polyhead reads; expected .safetensors"):
        load_pretrained(convnext(), str(tmp_path / "weights.npz"))
    with pytest.raises(ModelLoadError, match=r"'ConvNeXt_Teeny_Weights.IMAGENET1K_V1' is not a torchvision weights name"):
        load_pretrained(convnext(), "torchvision:ConvNeXt_Teeny_Weights.IMAGENET1K_V1")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "backbone.pretrained must name a source"),
        ({"source": "x", "inflate": "tile"}, r"inflate must be one of 'mean', 'centre', got 'tile'"),
        ({"source": "x", "inflat": "mean"}, r"has no option 'inflat'\. Did you mean 'inflate'\?"),
        ({"inflate": "mean"}, "needs a 'source' key"),
    ],
)
def test_bad_pretrained_values(value, message):
    with pytest.raises(ConfigError, match=message):
        PretrainedSource.parse(value)


def test_pretrained_never_reaches_the_constructor():
    config = {"type": "convnext", **SMALL_CONVNEXT, "pretrained": "timm/convnext_tiny.fb_in1k"}
    backbone = build(BACKBONES, config)  # nothing is read: building and describing ignore the source
    assert "pretrained" not in backbone.config and describe_backbone(config) == backbone.spec


# --------------------------------------------------------------------------- fine-tuning options


def test_training_options_are_checked():
    for options, message in [
        ({"freeze_backbone_steps": 10}, "needs train.freeze_backbone=True"),
        ({"freeze_backbone": True, "freeze_backbone_steps": 0}, "freeze_backbone_steps must be a positive integer"),
        ({"freeze_backbone": "yes"}, "freeze_backbone must be true or false"),
        ({"backbone_lr": -1.0}, "backbone_lr must be a positive number"),
        ({"layer_decay": 1.5}, r"layer_decay must be a number in \(0, 1\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrainingArguments(**options)


@pytest.mark.parametrize("name", ["convnext", "swin", "transformer", "conformer"])
def test_every_backbone_gives_the_depth_of_every_parameter(name):
    cls = BACKBONES.get(name)  # mmengine's own lookup imports a declared backbone too
    assert cls is registry.get(BACKBONES, name)
    backbone = cls(**cls.example_config())
    depths = backbone.parameter_depths()
    assert list(depths) == [n for n, _ in backbone.named_parameters()]
    assert min(depths.values()) in (0, 1) and max(depths.values()) >= 2


def test_backbone_lr_and_layer_decay_groups():
    from polyhead.tasks.detection import DetectionTask, PolyheadForObjectDetection

    model = PolyheadForObjectDetection(DetectionTask.example_config())  # ConvNeXt with depths (1, 1, 1, 1): depths 0..4
    assert len(parameter_groups(model, TrainingArguments(lr=1e-3))) == sum(1 for _ in model.parameters())  # one group, as before
    groups = parameter_groups(model, TrainingArguments(lr=1e-3, backbone_lr=1e-4, layer_decay=0.5))
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4, 5e-5, 2.5e-5, 1.25e-5, 6.25e-6])
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.adapter.parameters()}
    assert {id(p) for p in groups[-1]["params"]} == {id(p) for p in model.backbone.downsamples[0].parameters()}  # the stem
    assert {id(p) for p in groups[1]["params"]} >= {id(p) for p in model.backbone.norms[3].parameters()}  # the last block's side
    assert sum(len(g["params"]) for g in groups) == sum(1 for _ in model.parameters())


def detection_trainer(tmp_path, callbacks=(), **options):
    """The Trainer on the tiny detector and 8 training images (loss only): the generic loop, fast."""
    from torch.utils.data import Subset

    from polyhead.tasks.detection import DetectionTask
    from polyhead.training import Trainer

    task = DetectionTask()
    config = task.build_config({"image_size": 64, "backbone": {"type": "convnext", **SMALL_CONVNEXT},
                                "head": {"type": "fcos", "fpn_channels": 32, "num_convs": 1, "min_reduction": 8}}, {})
    data = task.build_data({}, config)
    torch.manual_seed(0)
    model = task.build_model(config)
    options = {"max_steps": 4, **options}
    args = TrainingArguments(output_dir=str(tmp_path / "run"), batch_size=2, eval_every=100, log_with=None,
                             progress_bar=False, scheduler="constant", **options)
    return Trainer(model=model, args=args, train_dataset=Subset(data.train, range(8)), eval_dataset=Subset(data.validation, range(2)),
                   collate_fn=data.collate_fn, processor=task.build_processor(config), callbacks=callbacks), model


@pytest.mark.slow
def test_freeze_backbone_until_step_n(tmp_path):
    """The backbone stays as loaded for ``freeze_backbone_steps`` optimizer steps, then trains; the head trains throughout."""
    seen = []

    def record(trainer):
        model = trainer.accelerator.unwrap_model(trainer.model)
        seen.append(({k: v.clone() for k, v in model.backbone.state_dict().items()}, {k: v.clone() for k, v in model.adapter.state_dict().items()}))

    trainer, model = detection_trainer(tmp_path, callbacks=[record], freeze_backbone=True, freeze_backbone_steps=2)
    start = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainer.train()
    changed = lambda a, b: not all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    (b1, a1), (b2, a2), (b3, _), (b4, _) = seen
    assert not changed(start, b1) and not changed(b1, b2)  # steps 1 and 2: frozen
    assert changed(b2, b3) and changed(b3, b4)  # then it trains
    assert changed(a1, a2)  # the head trained while the backbone was frozen


@pytest.mark.slow
def test_freeze_backbone_for_the_whole_run(tmp_path):
    trainer, model = detection_trainer(tmp_path / "frozen", freeze_backbone=True, max_steps=2)
    start = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainer.train()
    assert all(torch.equal(v, start[k]) for k, v in model.backbone.state_dict().items())
    assert not any(p.requires_grad for p in model.backbone.parameters())
