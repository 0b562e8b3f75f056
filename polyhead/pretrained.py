"""Pretrained backbones: start a polyhead backbone from timm, torchvision, MONAI, torchaudio or polyhead weights.

A backbone config names its source (``backbone=dict(type="convnext", ..., pretrained=SOURCE)``, or
``polyhead train ... --cfg-options model.backbone.pretrained=SOURCE``); the weights are loaded
when a run starts training (:func:`load_pretrained_backbone`, called by ``polyhead train``), never
by the backbone's constructor, and never again when a saved model is loaded: its checkpoint
already holds them. ``SOURCE`` is one of

* a Hub repo id, ``"timm/convnext_tiny.fb_in1k"``: ``config.json`` and ``model.safetensors``
  through ``huggingface_hub.hf_hub_download`` and its cache (offline with a filled cache);
* ``"torchvision:ConvNeXt_Tiny_Weights.IMAGENET1K_V1"``: torchvision's weights through
  ``torch.hub.load_state_dict_from_url`` and its cache (``$TORCH_HOME/hub/checkpoints``);
* a local folder (``model.safetensors`` [+ ``config.json``]) or file: ``.safetensors``, or
  ``.pth``/``.pt``/``.bin``/``.ckpt`` read with ``torch.load(weights_only=True)`` only;
* ``"polyhead:<folder or repo id>"`` or a polyhead model folder or repo: the backbone of another
  polyhead model, of any task (:func:`polyhead.loading.initialise_from`, ``modules=("backbone",)``);
* ``dict(source=SOURCE, inflate="mean" | "centre")``: the same, choosing how 2D kernels become 3D.

What a source holds is recognised from its ``config.json`` or its tensor names (a *family*); one small
pure function per family renames its tensors to polyhead's (:data:`FAMILIES`), then
:func:`adapt` turns 2D weights into 3D ones (I3D inflation) and RGB filters into ``in_channels``
filters, and the result must match the backbone tensor for tensor: a checkpoint of another
architecture or size is a :class:`~polyhead.errors.ModelLoadError` that names the source, what it
holds and the backbone config it fits.

Reference for inflation: Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and
the Kinetics Dataset" (CVPR 2017): a 2D kernel repeated ``k`` times along depth and divided by
``k`` gives, on a volume constant along depth, the 2D network's features at every depth.

Example:
    >>> import polyhead
    >>> polyhead.train("configs/detection/convnext_tiny_fcos.py", cfg_options={
    ...     "model.backbone": dict(type="convnext", depths=(3, 3, 9, 3), dims=(96, 192, 384, 768),
    ...                            pretrained="timm/convnext_tiny.fb_in1k")})
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, ModelLoadError, did_you_mean
from .registry import PRETRAINED_KEY

__all__ = [
    "FAMILIES",
    "INFLATE_MODES",
    "Checkpoint",
    "Converted",
    "Family",
    "PretrainedSource",
    "adapt",
    "convert_monai_swin",
    "convert_timm_convnext",
    "convert_timm_swin",
    "convert_torchaudio_conformer",
    "convert_torchvision_convnext",
    "convert_torchvision_swin",
    "detect_family",
    "load_pretrained",
    "load_pretrained_backbone",
    "read_checkpoint",
]

#: how a 2D kernel becomes 3D: ``"mean"`` (I3D: repeated along depth, divided by its depth) or ``"centre"``
#: (odd kernels at the centre depth, zeros elsewhere; even patchify kernels, whose stride is their size, still averaged)
INFLATE_MODES = ("mean", "centre")
#: file suffixes read with ``torch.load(weights_only=True)``
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
TORCHVISION_PREFIX = "torchvision:"
POLYHEAD_PREFIX = "polyhead:"
#: weight files looked for in a Hub repo or local folder, in this order
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: the weights that see the input channels (the stem, the patch embedding)
_FIRST_CONVS = ("downsamples.0.0.weight", "encoder.patch_embed.proj.weight")
#: buffers a backbone computes from its config: never loaded, never "new"
_DERIVED = ("relative_position_index",)


# --------------------------------------------------------------------------- the source


@dataclasses.dataclass(frozen=True)
class PretrainedSource:
    """A backbone config's ``pretrained`` value.

    Attributes:
        source: a Hub repo id, ``torchvision:<Weights>.<NAME>``, a local folder or file, or
            ``polyhead:<folder or repo id>``.
        inflate: how a 2D source's kernels become 3D for a ``spatial_dims=3`` backbone:
            ``"mean"`` (I3D) or ``"centre"`` (see :data:`INFLATE_MODES`).
    """

    source: str
    inflate: str = "mean"

    def __post_init__(self) -> None:
        if not isinstance(self.source, (str, os.PathLike)) or not str(self.source).strip():
            raise ConfigError(
                f"backbone.pretrained must name a source (a Hub repo id, 'torchvision:<Weights>.<NAME>', a local folder "
                f"or file, or 'polyhead:<model>'), got {self.source!r}."
            )
        if self.inflate not in INFLATE_MODES:
            raise ConfigError(f"backbone.pretrained.inflate must be one of {', '.join(map(repr, INFLATE_MODES))}, got {self.inflate!r}.")
        object.__setattr__(self, "source", str(self.source).strip())

    @classmethod
    def parse(cls, value: Any) -> "PretrainedSource":
        """From a config value: ``"SOURCE"`` or ``{"source": SOURCE, "inflate": ...}``."""
        if isinstance(value, PretrainedSource):
            return value
        if isinstance(value, Mapping):
            names = [f.name for f in dataclasses.fields(cls)]
            for key in value:
                if key not in names:
                    raise ConfigError(f"backbone.pretrained has no option {key!r}.{did_you_mean(str(key), names)} Options: {', '.join(names)}.")
            if "source" not in value:
                raise ConfigError("backbone.pretrained as a dict needs a 'source' key (a Hub repo id, folder, file or torchvision:...).")
            return cls(**value)
        return cls(value)


@dataclasses.dataclass
class Checkpoint:
    """The tensors a source holds, as read (source names), and what is known about them.

    Attributes:
        source: the source as the config names it.
        state_dict: source tensor names -> tensors.
        config: the source's ``config.json`` (timm's: ``architecture``, ``pretrained_cfg``), or ``{}``.
        licence: the licence its model card or config names, when it names one.
        file: the file the tensors were read from.
        family: set for sources whose library says what they are (torchvision's weights enum).
    """

    source: str
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    licence: str | None = None
    file: str | None = None
    family: str | None = None


def _expected_sources() -> str:
    return ("a Hub repo id ('timm/convnext_tiny.fb_in1k'), 'torchvision:<Weights>.<NAME>' ('torchvision:ConvNeXt_Tiny_Weights.IMAGENET1K_V1'), "
            "a local folder (model.safetensors [+ config.json]) or file (.safetensors, or .pth/.pt/.bin/.ckpt holding tensors only), "
            "or 'polyhead:<model folder or repo id>'")


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensor dict inside a training checkpoint (``{"state_dict": ...}``, ``{"model": ...}``), or ``obj`` itself."""
    for _ in range(3):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in ("state_dict", "model", "model_state_dict", "module", "net", "network", "weights") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            # a checkpoint that mixes tensors with other entries (epoch, step): keep the tensors
            tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors:
                return tensors
            break
        obj = inner
    raise ModelLoadError(f"pretrained={source!r} holds no tensors polyhead can read: expected a state dict (name -> tensor), "
                         "or a checkpoint with one under 'state_dict' or 'model'.")


def _read_file(path: Path, source: str) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a torch file read with ``weights_only=True``."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ModelLoadError(f"pretrained={source!r}: {path} is not a readable safetensors file ({err}).") from None
    if path.suffix not in TORCH_SUFFIXES:
        raise ModelLoadError(f"pretrained={source!r}: {path.name} is not a weights file polyhead reads; expected .safetensors, "
                             f"or {'/'.join(TORCH_SUFFIXES)} holding tensors only.")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()
        raise ModelLoadError(
            f"pretrained={source!r}: {path.name} is a pickle that needs torch.load(weights_only=False), which can run "
            "arbitrary code; polyhead reads only tensors (weights_only=True). Expected a .safetensors file or a "
            f"state dict of tensors; re-save it from a trusted environment with safetensors.torch.save_file. ({first[-1] if first else ''})"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise ModelLoadError(f"pretrained={source!r}: {path} is not a readable torch checkpoint ({type(err).__name__}: {str(err)[:200]}).") from None
    return _unwrap(obj, source)


def _card_licence(readme: Path | None) -> str | None:
    if readme is None or not readme.is_file():
        return None
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(readme) or {}
    except Exception:  # a card whose YAML header does not parse names no licence
        return None
    licence = meta.get("license")
    if licence == "other" and meta.get("license_name"):
        licence = f"other ({meta['license_name']})"
    return str(licence) if licence else None


def _config_licence(config: Mapping[str, Any]) -> str | None:
    pretrained_cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), Mapping) else {}
    licence = config.get("license") or pretrained_cfg.get("license")
    return str(licence) if licence else None


def _read_json(path: Path, source: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"pretrained={source!r}: {path} is not valid JSON ({err}).") from None
    return value if isinstance(value, dict) else {}


def _is_polyhead_config(config: Mapping[str, Any]) -> bool:
    return str(config.get("model_type", "")).startswith("polyhead")


def _read_folder(folder: Path, source: str) -> Checkpoint:
    config = _read_json(folder / "config.json", source) if (folder / "config.json").is_file() else {}
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            file = folder / name
            break
    else:
        found = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", *TORCH_SUFFIXES))
        if len(found) != 1:
            raise ModelLoadError(
                f"pretrained={source!r}: the folder {folder} has {'no weights file' if not found else 'several weights files: ' + ', '.join(found)}; "
                f"expected {' or '.join(WEIGHT_FILES)} (or name the file itself)."
            )
        file = folder / found[0]
    licence = _config_licence(config) or _card_licence(folder / "README.md")
    return Checkpoint(source=source, state_dict=_read_file(file, source), config=config, licence=licence, file=str(file))


def _hub_error(err: Exception, repo_id: str, source: str, what: str) -> ModelLoadError:
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)) and constants.HF_HUB_OFFLINE:
        return ModelLoadError(
            f"pretrained={source!r}: Hub repo {repo_id} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}), "
            "and offline mode (HF_HUB_OFFLINE=1) forbids downloading it. Run once online to fill the cache, or name a local folder or file."
        )
    if isinstance(err, GatedRepoError):
        return ModelLoadError(f"pretrained={source!r}: Hub repo {repo_id} is gated: accept its conditions on {constants.ENDPOINT} and log in (`hf auth login`).")
    if isinstance(err, (RepositoryNotFoundError, RevisionNotFoundError)):
        return ModelLoadError(
            f"pretrained={source!r} is not a local folder or file, and no Hub repo {repo_id} was found on {constants.ENDPOINT}. "
            f"Expected {_expected_sources()}."
        )
    if isinstance(err, EntryNotFoundError) and not isinstance(err, LocalEntryNotFoundError):
        return ModelLoadError(f"pretrained={source!r}: Hub repo {repo_id} has no {what}.")
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelLoadError(f"pretrained={source!r}: could not fetch {what} of Hub repo {repo_id}, and it is not in the local cache: {detail}")


def _hub_download(repo_id: str, filename: str, source: str, *, missing_ok: bool = False, repo_exists: bool = False,
                  uncached_ok: bool = False) -> Path | None:
    """``hf_hub_download`` (its cache; offline once cached). ``missing_ok``: ``None`` for a file the repo lacks
    (``repo_exists``: also when a mirror answers "repo not found" for it); ``uncached_ok``: ``None`` for one that cannot be fetched."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        HTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo_id, filename))
    except HFValidationError as err:
        raise ModelLoadError(f"pretrained={source!r} is not a local folder or file, nor a valid Hub repo id: {err}. Expected {_expected_sources()}.") from None
    except (HTTPError, OSError, OfflineModeIsEnabled, EntryNotFoundError) as err:
        if uncached_ok and isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return None
        missing = isinstance(err, EntryNotFoundError) and not isinstance(err, LocalEntryNotFoundError)
        if missing_ok and (missing or (repo_exists and isinstance(err, RepositoryNotFoundError))):
            return None
        raise _hub_error(err, repo_id, source, filename) from None


def _read_hub(repo_id: str, source: str) -> Checkpoint | str:
    """A Hub repo's tensors (``model.safetensors``, else ``pytorch_model.bin`` read with ``weights_only=True``);
    a polyhead repo is returned as its id (:func:`initialise_from` loads it)."""
    config_file = _hub_download(repo_id, "config.json", source, missing_ok=True)
    config = _read_json(config_file, source) if config_file is not None else {}
    if _is_polyhead_config(config):
        return repo_id
    for name in WEIGHT_FILES:
        file = _hub_download(repo_id, name, source, missing_ok=True, repo_exists=config_file is not None)
        if file is not None:
            break
    else:
        raise ModelLoadError(f"pretrained={source!r}: Hub repo {repo_id} has neither {' nor '.join(WEIGHT_FILES)}; expected a timm-style repo (config.json + model.safetensors).")
    licence = _config_licence(config) or _card_licence(_hub_download(repo_id, "README.md", source, missing_ok=True, repo_exists=True, uncached_ok=True))
    return Checkpoint(source=source, state_dict=_read_file(file, source), config=config, licence=licence, file=f"{repo_id}/{name}")


def _read_torchvision(name: str, source: str) -> Checkpoint:
    """torchvision's weights ``name`` (``ConvNeXt_Tiny_Weights.IMAGENET1K_V1``) through torch.hub's cache."""
    import torchvision

    try:
        weights = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError) as err:
        raise ModelLoadError(
            f"pretrained={source!r}: {name!r} is not a torchvision weights name ({err}); expected '<Weights enum>.<NAME>', "
            "e.g. 'torchvision:ConvNeXt_Tiny_Weights.IMAGENET1K_V1' or 'torchvision:Swin_T_Weights.IMAGENET1K_V1'."
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        obj = torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=False, check_hash=True, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelLoadError(f"pretrained={source!r}: {cached} needs torch.load(weights_only=False); polyhead reads only tensors ({err}).") from None
    except (OSError, RuntimeError, ValueError) as err:  # urllib's URLError is an OSError
        raise ModelLoadError(
            f"pretrained={source!r}: torchvision's {name} is not in torch's cache ({cached}) and could not be downloaded "
            f"from {weights.url}: {str(err)[:200]}"
        ) from None
    family = {"convnext": "torchvision-convnext", "swin": "torchvision-swin"}.get(type(weights).__name__.split("_")[0].lower())
    licence = weights.meta.get("license") if isinstance(weights.meta, Mapping) else None
    return Checkpoint(source=source, state_dict=_unwrap(obj, source), licence=licence, file=str(cached), family=family)


def read_checkpoint(source: str) -> Checkpoint | str:
    """Read ``source``: a :class:`Checkpoint`, or a polyhead model (folder or repo id, as a string) for ``initialise_from``.

    Raises:
        ModelLoadError: the source is missing, unreadable, or a pickle that needs ``weights_only=False``.
    """
    if source.startswith(POLYHEAD_PREFIX):
        return source[len(POLYHEAD_PREFIX):]
    if source.startswith(TORCHVISION_PREFIX):
        return _read_torchvision(source[len(TORCHVISION_PREFIX):], source)
    path = Path(source).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if config.is_file() and _is_polyhead_config(_read_json(config, source)):
            return str(path)
        return _read_folder(path, source)
    if path.is_file():
        return Checkpoint(source=source, state_dict=_read_file(path, source), file=str(path),
                          licence=_card_licence(path.parent / "README.md"))
    from .model_dir import looks_local

    if looks_local(source) or path.suffix in (".safetensors", *TORCH_SUFFIXES):
        raise ModelLoadError(f"pretrained={source!r}: no such file or folder. Expected {_expected_sources()}.")
    return _read_hub(source, source)


# --------------------------------------------------------------------------- converters: one pure function per family


@dataclasses.dataclass
class Converted:
    """A source's tensors under polyhead's names, and the source tensors with no place in the backbone."""

    tensors: dict[str, torch.Tensor]
    ignored: list[str]


def _rename(state_dict: Mapping[str, torch.Tensor], rules: list[tuple[str, Callable[[re.Match], str | None]]]) -> Converted:
    """Apply the first matching ``(regex, new name)`` rule to every name; unmatched (or ``None``) names are ignored."""
    tensors, ignored = {}, []
    for name, tensor in state_dict.items():
        for pattern, target in rules:
            match = re.fullmatch(pattern, name)
            if match:
                new = target(match)
                if new is not None:
                    tensors[new] = tensor
                elif not name.endswith(_DERIVED):
                    ignored.append(name)
                break
        else:
            ignored.append(name)
    return Converted(tensors, ignored)


_CONVNEXT_BLOCK = {"conv_dw": "depthwise", "norm": "norm", "mlp.fc1": "pointwise1", "mlp.fc2": "pointwise2", "gamma": "gamma"}


def convert_timm_convnext(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """timm's ``ConvNeXt`` (``stem``, ``stages.i.downsample``, ``stages.i.blocks.j``) -> polyhead's ``convnext``.

    The classifier (``head.*``) is ignored; polyhead's per-output norms (``norms.*``) are new.
    """
    def block(m: re.Match) -> str | None:
        for old, new in _CONVNEXT_BLOCK.items():
            if m[3] == old or m[3].startswith(old + "."):
                return f"stages.{m[1]}.{m[2]}.{new}{m[3][len(old):]}"
        return None

    return _rename(state_dict, [
        (r"stem\.([01])\.(weight|bias)", lambda m: f"downsamples.0.{m[1]}.{m[2]}"),
        (r"stages\.(\d+)\.downsample\.([01])\.(weight|bias)", lambda m: f"downsamples.{m[1]}.{m[2]}.{m[3]}"),
        (r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", block),
    ])


def convert_torchvision_convnext(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """torchvision's ``convnext_*`` (``features.0`` stem, ``features.2i+1`` stages, ``features.2i`` downsampling) -> ``convnext``.

    ``layer_scale`` ``(C, 1, 1)`` becomes ``gamma`` ``(C,)``; the classifier is ignored.
    """
    parts = {"0": "depthwise", "2": "norm", "3": "pointwise1", "5": "pointwise2"}
    converted = _rename(state_dict, [
        (r"features\.0\.([01])\.(weight|bias)", lambda m: f"downsamples.0.{m[1]}.{m[2]}"),
        (r"features\.(\d+)\.([01])\.(weight|bias)", lambda m: f"downsamples.{int(m[1]) // 2}.{m[2]}.{m[3]}" if int(m[1]) % 2 == 0 else None),
        (r"features\.(\d+)\.(\d+)\.layer_scale", lambda m: f"stages.{(int(m[1]) - 1) // 2}.{m[2]}.gamma"),
        (r"features\.(\d+)\.(\d+)\.block\.(\d)\.(weight|bias)",
         lambda m: f"stages.{(int(m[1]) - 1) // 2}.{m[2]}.{parts[m[3]]}.{m[4]}" if m[3] in parts else None),
    ])
    converted.tensors = {k: v.reshape(-1) if k.endswith(".gamma") else v for k, v in converted.tensors.items()}
    return converted


_SWIN_BLOCK = {"mlp.fc1": "mlp.linear1", "mlp.fc2": "mlp.linear2", "mlp.0": "mlp.linear1", "mlp.3": "mlp.linear2"}


def _swin_block(stage: int, block: str, rest: str) -> str | None:
    if rest.endswith(_DERIVED):
        return None
    for old, new in _SWIN_BLOCK.items():
        if rest.startswith(old + "."):
            rest = new + rest[len(old):]
            break
    return f"encoder.layers{stage}.0.blocks.{block}.{rest}"


def convert_timm_swin(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """timm's ``SwinTransformer`` -> polyhead's ``swin`` (MONAI's ``SwinTransformer``, ``patch_norm=True``).

    timm merges patches at the *start* of stages 1-3 (``layers.i.downsample``), MONAI at the *end* of
    stages 0-2 (``layersI.0.downsample``): the same layers, one stage apart. The 2x2 sub-patches are
    concatenated in the same order by both ((0,0), (1,0), (0,1), (1,1) as (row, column)). MONAI's merging after the
    last stage (polyhead's stride-32·patch output) has no timm counterpart: it is new. The final
    ``norm`` and the classifier are ignored.
    """
    return _rename(state_dict, [
        (r"patch_embed\.(proj|norm)\.(weight|bias)", lambda m: f"encoder.patch_embed.{m[1]}.{m[2]}"),
        (r"layers\.(\d+)\.blocks\.(\d+)\.(.+)", lambda m: _swin_block(int(m[1]) + 1, m[2], m[3])),
        (r"layers\.(\d+)\.downsample\.(norm|reduction)\.(weight|bias)", lambda m: f"encoder.layers{m[1]}.0.downsample.{m[2]}.{m[3]}"),
    ])


def convert_torchvision_swin(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """torchvision's ``swin_t/s/b`` (``features.0`` patch embedding, ``features.2i+1`` blocks, ``features.2i`` merging) -> ``swin``."""
    def feature(m: re.Match) -> str | None:
        index = int(m[1])
        if index % 2:  # a stage of blocks
            block, _, rest = m[2].partition(".")
            return _swin_block((index + 1) // 2, block, rest) if block.isdigit() else None
        return f"encoder.layers{index // 2}.0.downsample.{m[2]}" if re.fullmatch(r"(norm|reduction)\.(weight|bias)", m[2]) else None

    return _rename(state_dict, [
        (r"features\.0\.0\.(weight|bias)", lambda m: f"encoder.patch_embed.proj.{m[1]}"),
        (r"features\.0\.2\.(weight|bias)", lambda m: f"encoder.patch_embed.norm.{m[1]}"),
        (r"features\.(\d+)\.(.+)", feature),
    ])


def _monai_prefix(names: Any) -> str | None:
    """The prefix before MONAI's ``patch_embed.proj.weight`` (``swinViT.``, ``module.``, ``encoder.``, ``""``)."""
    for name in names:
        if name.endswith("patch_embed.proj.weight"):
            prefix = name[: -len("patch_embed.proj.weight")]
            if any(n.startswith(prefix + "layers1.") for n in names):
                return prefix
    return None


def convert_monai_swin(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """MONAI's Swin-UNETR encoder -> polyhead's ``swin`` (MONAI's ``SwinTransformer`` itself: names only).

    Three layouts, as MONAI reads them: a supervised ``SwinUNETR`` state dict (the BTCV bundle:
    ``swinViT.*``; the decoder is ignored), the self-supervised ``model_swinvit.pt`` (``module.*``, MLPs named
    ``fc1``/``fc2``, as ``SwinUNETR.load_from`` reads it) and the ``encoder.layersK.0.0.*`` layout
    ``filter_swinunetr`` reads; the self-supervised heads are ignored.
    """
    prefix = _monai_prefix(list(state_dict)) or ""
    p = re.escape(prefix)
    return _rename(state_dict, [
        (p + r"patch_embed\.(proj|norm)\.(weight|bias)", lambda m: f"encoder.patch_embed.{m[1]}.{m[2]}"),
        (p + r"layers([1-4])\.0\.(?:0\.)?blocks\.(\d+)\.(.+)", lambda m: _swin_block(int(m[1]), m[2], m[3])),
        (p + r"layers([1-4])\.0\.(?:0\.)?downsample\.(norm|reduction)\.(weight|bias)", lambda m: f"encoder.layers{m[1]}.0.downsample.{m[2]}.{m[3]}"),
        (p + r"layers([1-4])c\.(.+)", lambda m: f"encoder.layers{m[1]}c.{m[2]}"),
    ])


def convert_torchaudio_conformer(state_dict: Mapping[str, torch.Tensor]) -> Converted:
    """torchaudio's ``Conformer`` (``conformer_layers.i.*``, under any prefix: an RNN-T's encoder) -> ``conformer``."""
    return _rename(state_dict, [(r"(?:.*\.)?(conformer_layers\.\d+\..+)", lambda m: f"conformer.{m[1]}")])


@dataclasses.dataclass(frozen=True)
class Family:
    """A kind of checkpoint polyhead converts.

    Attributes:
        name: its id in reports (``"timm-convnext"``).
        description: how messages and model cards name it.
        backbone: the registered polyhead backbone it starts.
        spatial_dims: the source's spatial dims (2 or 3; ``None`` for sequence backbones).
        convert: the pure renaming function.
        detect: ``True`` for the tensor names of this family.
        architectures: timm ``config.json`` ``architecture`` prefixes of this family.
    """

    name: str
    description: str
    backbone: str
    spatial_dims: int | None
    convert: Callable[[Mapping[str, torch.Tensor]], Converted]
    detect: Callable[[set[str]], bool]
    architectures: tuple[str, ...] = ()


def _has(names: set[str], pattern: str) -> bool:
    regex = re.compile(pattern)
    return any(regex.fullmatch(n) for n in names)


#: every family polyhead converts, tried in this order
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("timm-convnext", "timm ConvNeXt", "convnext", 2, convert_timm_convnext,
           lambda n: "stem.0.weight" in n and _has(n, r"stages\.0\.blocks\.0\.conv_dw\.weight"), ("convnext",)),
    Family("torchvision-convnext", "torchvision ConvNeXt", "convnext", 2, convert_torchvision_convnext,
           lambda n: _has(n, r"features\.1\.0\.layer_scale")),
    Family("timm-swin", "timm Swin Transformer", "swin", 2, convert_timm_swin,
           lambda n: _has(n, r"layers\.0\.blocks\.0\.attn\.qkv\.weight") and "patch_embed.proj.weight" in n, ("swin_",)),
    Family("torchvision-swin", "torchvision Swin Transformer", "swin", 2, convert_torchvision_swin,
           lambda n: _has(n, r"features\.1\.0\.attn\.qkv\.weight")),
    Family("monai-swin", "MONAI Swin-UNETR encoder", "swin", 3, convert_monai_swin,
           lambda n: _monai_prefix(n) is not None),
    Family("torchaudio-conformer", "torchaudio Conformer", "conformer", None, convert_torchaudio_conformer,
           lambda n: _has(n, r"(?:.*\.)?conformer_layers\.0\.ffn1\.sequential\.0\.weight")),
)}

#: tensor names of architectures polyhead recognises but does not convert, with what to use instead
_UNSUPPORTED = {
    r"(?:.*\.)?(logit_scale|cpb_mlp\..+)": "a Swin Transformer V2 (cosine attention, continuous position bias), which polyhead's `swin` (MONAI's v1 attention) cannot run; use a Swin V1 checkpoint (swin_tiny_patch4_window7_224, Swin_T_Weights)",
    r"(?:.*\.)?mlp\.grn\..+": "a ConvNeXt V2 (global response normalisation), which polyhead's `convnext` does not have; use a ConvNeXt V1 checkpoint (convnext_tiny.fb_in1k, ConvNeXt_Tiny_Weights)",
}


def detect_family(checkpoint: Checkpoint) -> Family:
    """The family of ``checkpoint``: from torchvision's weights enum, timm's ``config.json``, or the tensor names."""
    names = set(checkpoint.state_dict)
    for pattern, what in _UNSUPPORTED.items():
        if _has(names, pattern):
            raise ModelLoadError(f"pretrained={checkpoint.source!r} is {what}.")
    if checkpoint.family:
        return FAMILIES[checkpoint.family]
    architecture = str(checkpoint.config.get("architecture", ""))
    for family in FAMILIES.values():
        if family.detect(names) and (not architecture or not family.architectures or architecture.startswith(family.architectures)):
            return family
    sample = ", ".join(sorted(names)[:6])
    what = f"a timm {architecture!r}" if architecture else f"tensors named {sample}{', ...' if len(names) > 6 else ''}"
    raise ModelLoadError(
        f"pretrained={checkpoint.source!r} holds {what}: no checkpoint polyhead converts. Expected one of: "
        + ", ".join(f.description for f in FAMILIES.values()) + ", or a polyhead model ('polyhead:<model>')."
    )


# --------------------------------------------------------------------------- adaptation: 2D -> 3D, RGB -> in_channels


def _adapt_channels(weight: torch.Tensor, channels: int) -> tuple[torch.Tensor, str]:
    """``(O, C_src, *k)`` -> ``(O, channels, *k)``: summed for one channel, else repeated and rescaled (timm's ``adapt_input_conv``)."""
    source = weight.shape[1]
    if channels == 1:
        return weight.sum(dim=1, keepdim=True), f"{source} -> 1 input channel (filters summed)"
    repeats = math.ceil(channels / source)
    adapted = weight.repeat(1, repeats, *(1,) * (weight.dim() - 2))[:, :channels] * (source / channels)
    return adapted, f"{source} -> {channels} input channels (filters repeated, scaled by {source}/{channels})"


def _inflate_kernel(weight: torch.Tensor, depth: int, mode: str) -> tuple[torch.Tensor, str]:
    """``(O, I, kh, kw)`` -> ``(O, I, depth, kh, kw)``."""
    if mode == "centre" and depth % 2:
        inflated = torch.zeros(*weight.shape[:2], depth, *weight.shape[2:], dtype=weight.dtype)
        inflated[:, :, depth // 2] = weight
        return inflated, f"2D kernel -> {depth}x{'x'.join(map(str, weight.shape[2:]))} (centre depth)"
    inflated = weight.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth
    return inflated, f"2D kernel -> {depth}x{'x'.join(map(str, weight.shape[2:]))} (repeated along depth / {depth})"


def _inflate_bias_table(table: torch.Tensor, rows: int) -> tuple[torch.Tensor, str]:
    """A 2D window's relative position bias ``((2w-1)**2, heads)`` -> 3D ``((2w-1)**3, heads)``, the same at every depth offset."""
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0] or side**3 != rows:
        raise ValueError(f"a relative position table of {table.shape[0]} rows inflates to {side**3}, not {rows} (another window size)")
    inflated = table.reshape(1, side, side, -1).expand(side, side, side, table.shape[1]).reshape(side**3, table.shape[1])
    return inflated.clone(), f"2D window bias ({side}x{side} relative offsets) -> {side}x{side}x{side}, the same at every depth offset"


def _merge_slots_3d(downsample: str) -> list[tuple[int, int, int]]:
    """(depth, row, column) offset of each 2x2x2 sub-patch in MONAI's 3D patch merging, in concatenation order."""
    if downsample == "mergingv2":
        return [(i, j, k) for i in range(2) for j in range(2) for k in range(2)]
    return [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)]


#: (row, column) offset of each 2x2 sub-patch in MONAI's 2D merging (and timm's, torchvision's), in concatenation order
_MERGE_SLOTS_2D = [(0, 0), (1, 0), (0, 1), (1, 1)]


def _inflate_merge(tensor: torch.Tensor, *, dim: int, downsample: str, reduction: bool) -> tuple[torch.Tensor, str]:
    """2D patch merging (4 sub-patches of ``dim`` channels) -> 3D (8 sub-patches): each 3D sub-patch takes its
    (row, column)'s 2D weights; the reduction is halved, as the two depths see the same values."""
    blocks = tensor.reshape(*tensor.shape[:-1], 4, dim)
    order = [_MERGE_SLOTS_2D.index((row, col)) for _, row, col in _merge_slots_3d(downsample)]
    inflated = blocks[..., order, :].reshape(*tensor.shape[:-1], 8 * dim)
    return (inflated / 2 if reduction else inflated), f"2x2 patch merging -> 2x2x2 ({downsample}){' / 2' if reduction else ''}"


def adapt(tensors: Mapping[str, torch.Tensor], backbone: nn.Module, *, inflate: str = "mean") -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fit converted tensors to ``backbone`` where its shapes differ in a known way: 2D -> 3D (I3D
    inflation of kernels, Swin window biases and patch merging) and the input channels of the first
    convolution. Returns the tensors and one line per adapted tensor; other shapes are left for the check.
    """
    own = backbone.state_dict()
    config = getattr(backbone, "config", {}) or {}
    downsample = config.get("downsample", "merging")
    out, adapted = {}, []
    for name, tensor in tensors.items():
        target = own.get(name)
        notes = []
        if target is not None and tensor.shape != target.shape:
            try:
                if tensor.dim() == 4 and target.dim() == 5:  # a 2D convolution of a 3D backbone
                    tensor, note = _inflate_kernel(tensor, target.shape[2], inflate)
                    notes.append(note)
                if tensor.dim() == target.dim() >= 4 and tensor.shape[1] != target.shape[1] and tensor.shape[0] == target.shape[0] \
                        and tensor.shape[2:] == target.shape[2:] and name in _FIRST_CONVS:
                    tensor, note = _adapt_channels(tensor, target.shape[1])
                    notes.append(note)
                if name.endswith("relative_position_bias_table") and tensor.dim() == 2 and tensor.shape[1] == target.shape[1]:
                    tensor, note = _inflate_bias_table(tensor, target.shape[0])
                    notes.append(note)
                if ".downsample." in name and tensor.shape[-1] * 2 == target.shape[-1] and tensor.shape[:-1] == target.shape[:-1]:
                    tensor, note = _inflate_merge(tensor, dim=tensor.shape[-1] // 4, downsample=downsample, reduction=name.endswith("reduction.weight"))
                    notes.append(note)
            except ValueError as err:
                notes = [str(err)]
        if notes and target is not None and tensor.shape == target.shape:
            adapted.append(f"{name}: " + "; ".join(notes))
        out[name] = tensor
    return out, adapted


# --------------------------------------------------------------------------- what the source fits


def _suggest(family: Family, tensors: Mapping[str, torch.Tensor]) -> str:
    """The backbone config the converted tensors fit (``dict(type="convnext", depths=..., dims=...)``)."""
    def count(pattern: str) -> list[int]:
        found: dict[int, set[int]] = {}
        for name in tensors:
            m = re.match(pattern, name)
            if m:
                found.setdefault(int(m[1]), set()).add(int(m[2]))
        return [len(found[i]) for i in sorted(found)]

    try:
        if family.backbone == "convnext":
            depths = count(r"stages\.(\d+)\.(\d+)\.")
            dims = [int(tensors[f"stages.{i}.0.depthwise.weight"].shape[0]) for i in range(len(depths))]
            return f"dict(type='convnext', depths={tuple(depths)}, dims={tuple(dims)})"
        if family.backbone == "swin":
            depths = count(r"encoder\.layers(\d)\.0\.blocks\.(\d+)\.")
            proj = tensors["encoder.patch_embed.proj.weight"]
            heads = [int(tensors[f"encoder.layers{i}.0.blocks.0.attn.relative_position_bias_table"].shape[1]) for i in range(1, 5)]
            rows = int(tensors["encoder.layers1.0.blocks.0.attn.relative_position_bias_table"].shape[0])
            window = (round(rows ** (1 / (proj.dim() - 2))) + 1) // 2
            extra = ", patch_norm=True" if "encoder.patch_embed.norm.weight" in tensors else ""
            return (f"dict(type='swin', feature_size={int(proj.shape[0])}, depths={tuple(depths)}, num_heads={tuple(heads)}, "
                    f"window_size={window}, patch_size={int(proj.shape[-1])}{extra})")
        if family.backbone == "conformer":
            depth = len({n.split(".")[2] for n in tensors if n.startswith("conformer.conformer_layers.")})
            ffn = tensors["conformer.conformer_layers.0.ffn1.sequential.1.weight"]
            kernel = tensors["conformer.conformer_layers.0.conv_module.sequential.2.weight"].shape[-1]
            return f"dict(type='conformer', dim={int(ffn.shape[1])}, depth={depth}, ffn_dim={int(ffn.shape[0])}, kernel_size={int(kernel)})"
    except (KeyError, IndexError, ValueError):
        pass
    return f"a `{family.backbone}` backbone of the source's size"


def _check(family: Family, checkpoint: Checkpoint, tensors: Mapping[str, torch.Tensor], backbone: nn.Module) -> None:
    own = backbone.state_dict()
    extra = sorted(k for k in tensors if k not in own)
    wrong = [f"{k}: {tuple(v.shape)} in the source, {tuple(own[k].shape)} here" for k, v in tensors.items() if k in own and v.shape != own[k].shape]
    if not extra and not wrong:
        return
    problems = []
    if extra:
        problems.append(f"{len(extra)} of its tensors have no place in this backbone ({', '.join(extra[:4])}{', ...' if len(extra) > 4 else ''})")
    if wrong:
        problems.append(f"{len(wrong)} have other shapes ({'; '.join(wrong[:3])}{'; ...' if len(wrong) > 3 else ''})")
    config = {k: v for k, v in (getattr(backbone, "config", {}) or {}).items() if k != "type"}
    raise ModelLoadError(
        f"pretrained={checkpoint.source!r} is a {family.description} checkpoint that does not fit this `{family.backbone}` backbone "
        f"({', '.join(f'{k}={v}' for k, v in config.items()) or 'its defaults'}): " + " and ".join(problems)
        + f". It fits {_suggest(family, tensors)}; set the backbone config to that."
    )


# --------------------------------------------------------------------------- loading


class _Holder(nn.Module):
    """A module whose ``backbone`` is the given one: what :func:`initialise_from` copies ``backbone.*`` into."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


def load_pretrained(backbone: nn.Module, pretrained: str | Mapping[str, Any] | PretrainedSource) -> dict[str, Any]:
    """Load ``pretrained`` into ``backbone`` (a built polyhead backbone); returns the report.

    The report: ``{"source", "family", "licence", "file", "loaded", "new", "ignored", "adapted"}``:
    the number of tensors loaded, the backbone tensors left as initialised (names), the source
    tensors with no place in the backbone (its classifier, decoder or self-supervised heads), and
    the tensors inflated to 3D or to other input channels.

    Raises:
        ModelLoadError: the source is missing or unreadable, not a checkpoint polyhead converts, or
            of another architecture or size than the backbone (the message names the config it fits).
    """
    spec = PretrainedSource.parse(pretrained)
    read = read_checkpoint(spec.source)
    if isinstance(read, str):  # a polyhead model: its backbone, by initialise_from
        from .loading import Initialisation, initialise_from

        try:
            report = initialise_from(_Holder(backbone), Initialisation(source=read, modules=("backbone",)))
        except ConfigError as err:
            raise ModelLoadError(f"pretrained={spec.source!r}: {err}") from None
        licence = _card_licence(Path(read) / "README.md") if Path(read).is_dir() else None
        return {"source": spec.source, "family": "polyhead", "description": "polyhead model (backbone)", "licence": licence,
                "file": read, "loaded": report["loaded"], "new": [k.removeprefix("backbone.") for k in report["new"]],
                "ignored": report["ignored"], "adapted": []}
    family = detect_family(read)
    backbone_type = getattr(type(backbone), "registry_name", "")
    if backbone_type != family.backbone:
        raise ModelLoadError(
            f"pretrained={spec.source!r} is a {family.description} checkpoint: it starts a `{family.backbone}` backbone, "
            f"and this config's backbone is `{backbone_type or type(backbone).__name__}`. Set backbone.type='{family.backbone}' "
            f"({_suggest(family, family.convert(read.state_dict).tensors)}), or name a source for `{backbone_type}`."
        )
    converted = family.convert(read.state_dict)
    tensors, adapted = adapt(converted.tensors, backbone, inflate=spec.inflate)
    _check(family, read, tensors, backbone)
    own = backbone.state_dict()
    with torch.no_grad():
        for name, tensor in tensors.items():
            own[name].copy_(tensor)
    new = sorted(k for k in own if k not in tensors and not k.endswith(_DERIVED))
    return {"source": spec.source, "family": family.name, "description": family.description, "licence": read.licence,
            "file": read.file, "loaded": len(tensors), "new": new, "ignored": sorted(converted.ignored), "adapted": sorted(adapted)}


def load_pretrained_backbone(model: nn.Module, *, resume: bool = False) -> dict[str, Any] | None:
    """Load the source ``model.config.backbone["pretrained"]`` names into ``model.backbone``; ``None`` without one.

    Called by ``polyhead train`` right after the model is built (before ``--init-from``). A resumed
    run's checkpoint already holds the weights: then the source is only named (``"resumed": True``).
    """
    backbone_config = getattr(getattr(model, "config", None), "backbone", None)
    if not isinstance(backbone_config, Mapping) or backbone_config.get(PRETRAINED_KEY) in (None, ""):
        return None
    spec = PretrainedSource.parse(backbone_config[PRETRAINED_KEY])
    if resume:
        return {"source": spec.source, "resumed": True}
    return load_pretrained(model.backbone, spec)
