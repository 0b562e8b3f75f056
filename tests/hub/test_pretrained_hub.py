"""``backbone.pretrained`` from the Hub: timm repos as timm publishes them (``save_for_hf``: ``model.safetensors``,
``config.json``, a card with the licence), pulled through a real olah mirror with ``hf_hub_download`` and its cache,
then offline from the cache; errors for a missing repo and an uncached one offline.

The repos hold small ConvNeXt and Swin models of timm's own classes (a full-size pull through the mirror takes
half a minute); ``tests/test_pretrained.py`` checks the full-size ConvNeXt-T and Swin-T from a Hub-style folder.
"""

from __future__ import annotations

import pytest
import torch

from polyhead.backbones import ConvNeXt, SwinBackbone
from polyhead.errors import ModelLoadError
from polyhead.pretrained import load_pretrained

from ..test_pretrained import SMALL_CONVNEXT, SMALL_SWIN, TOLERANCE, perturb, timm_convnext_parity, timm_swin_parity
from .conftest import seed_repo

timm = pytest.importorskip("timm")

CONVNEXT_REPO = "timm/convnext_tiny.fb_in1k"
SWIN_REPO = "timm/swin_tiny_patch4_window7_224.ms_in1k"
CARD = "---\ntags:\n- image-classification\n- timm\nlibrary_name: timm\nlicense: {licence}\n---\n# {name}\n"


@pytest.fixture(scope="module")
def timm_models(mirrors, tmp_path_factory) -> dict[str, torch.nn.Module]:
    """A timm ConvNeXt and Swin with random weights, seeded into the mirror as timm's Hub repos are laid out."""
    from timm.models import save_for_hf

    torch.manual_seed(0)
    convnext = timm.create_model("convnext_tiny", pretrained=False, depths=SMALL_CONVNEXT["depths"], dims=SMALL_CONVNEXT["dims"])
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=128, embed_dim=24, depths=(1, 1, 1, 1),
                             num_heads=(1, 2, 3, 4), window_size=4)
    models = {CONVNEXT_REPO: (perturb(convnext, seed=4), "apache-2.0"), SWIN_REPO: (perturb(swin, seed=5), "mit")}
    for repo_id, (model, licence) in models.items():
        folder = tmp_path_factory.mktemp(repo_id.split("/")[1])
        save_for_hf(model, folder, safe_serialization=True)
        (folder / "README.md").write_text(CARD.format(licence=licence, name=repo_id))
        seed_repo(mirrors, repo_id, folder)
    return {repo_id: model for repo_id, (model, _) in models.items()}


def test_timm_convnext_from_the_hub(olah, hf, timm_models):
    hf.point(olah)
    ours = ConvNeXt(spatial_dims=2, in_channels=3, **SMALL_CONVNEXT).eval()
    report = load_pretrained(ours, CONVNEXT_REPO)
    assert (report["family"], report["licence"], report["file"]) == ("timm-convnext", "apache-2.0", f"{CONVNEXT_REPO}/model.safetensors")
    diffs = timm_convnext_parity(timm_models[CONVNEXT_REPO], ours, torch.randn(1, 3, 64, 64))
    assert max(diffs) <= TOLERANCE, diffs
    # the pull went through huggingface_hub's cache: offline, it loads again
    hf.point(None, offline=True)
    again = ConvNeXt(spatial_dims=2, in_channels=3, **SMALL_CONVNEXT)
    assert load_pretrained(again, CONVNEXT_REPO)["licence"] == "apache-2.0"
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in again.state_dict().items() if not k.startswith("norms."))


def test_timm_swin_from_the_hub(olah, hf, timm_models):
    hf.point(olah)
    ours = SwinBackbone(spatial_dims=2, in_channels=3, **SMALL_SWIN).eval()
    report = load_pretrained(ours, SWIN_REPO)
    assert (report["family"], report["licence"]) == ("timm-swin", "mit")
    diffs = timm_swin_parity(timm_models[SWIN_REPO], ours, torch.randn(1, 3, 128, 128))
    assert max(diffs) <= TOLERANCE, diffs


def test_hub_errors(olah, hf, timm_models):
    hf.point(olah)
    with pytest.raises(ModelLoadError, match=r"pretrained='timm/convnext_teeny' is not a local folder or file, and no Hub repo "
                                             r"timm/convnext_teeny was found on http://127\.0\.0\.1.*Expected a Hub repo id"):
        load_pretrained(ConvNeXt(), "timm/convnext_teeny")
    hf.point(None, offline=True)  # a fresh cache, offline
    with pytest.raises(ModelLoadError, match=r"Hub repo timm/swin_tiny_patch4_window7_224.ms_in1k is not in the local Hugging Face cache"):
        load_pretrained(SwinBackbone(spatial_dims=2, in_channels=3, **SMALL_SWIN), SWIN_REPO)
