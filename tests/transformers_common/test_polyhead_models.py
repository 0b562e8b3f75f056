"""transformers' own common model and config tests, run against every polyhead model class.

One ``ModelTester`` and one test class per model class, in transformers' style
(``tests/models/*/test_modeling_*.py``): a tiny config, ``prepare_config_and_inputs_for_common``,
``all_model_classes``. ``ModelTesterMixin`` and ``ConfigTester`` are transformers 5.23.0's,
unchanged (see ``README.md``). A test is skipped only where it does not apply to the modality,
with the reason in the skip message, as transformers' ConvNext / Wav2Vec2 / DecisionTransformer
tests do.
"""

from __future__ import annotations

import copy
import unittest

import torch

from polyhead.configuration import PolyheadConfig
from polyhead.tasks.asr import ASRConfig, PolyheadForCTC
from polyhead.tasks.detection import DetectionConfig, PolyheadForObjectDetection
from polyhead.tasks.forecasting import ForecastingConfig, PolyheadForForecasting
from polyhead.tasks.recommendation import CTRConfig, NextItemConfig, PolyheadForCTR, PolyheadForNextItem
from polyhead.tasks.rl import DecisionTransformerConfig, PolyheadForDecisionTransformer, PolyheadForPPO, PPOConfig
from polyhead.tasks.segmentation import PolyheadForSegmentation, SegmentationConfig

from .test_configuration_common import ConfigTester
from .test_modeling_common import ModelTesterMixin


class _PolyheadModelTester:
    """What every tester shares: batch size, sizes read from the config's backbone, labels on request.

    Subclasses give :meth:`get_config`, :meth:`prepare_inputs`, :meth:`prepare_labels` and
    ``seq_length`` (backbone tokens per example; sequence backbones).
    """

    batch_size = 2
    is_training = True

    def __init__(self, parent: unittest.TestCase) -> None:
        self.parent = parent
        backbone = self.get_config().backbone
        if "depth" in backbone:  # sequence backbones: transformers' text / audio tester sizes
            self.hidden_size = backbone["dim"]
            self.num_hidden_layers = backbone["depth"]
            self.num_attention_heads = backbone["num_heads"]
        else:  # pyramid backbones: as transformers' ConvNext tester (stages, not hidden layers)
            self.hidden_sizes = backbone["dims"]
            self.depths = backbone["depths"]
            self.num_stages = len(backbone["depths"])

    def get_config(self) -> PolyheadConfig:
        raise NotImplementedError

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prepare_labels(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prepare_config_and_inputs_for_common(self) -> tuple[PolyheadConfig, dict[str, torch.Tensor]]:
        return self.get_config(), self.prepare_inputs()


class _PolyheadModelTest(ModelTesterMixin):
    """``ModelTesterMixin`` plus what polyhead's models have in common: labels come from the tester."""

    model_tester_class: type[_PolyheadModelTester]
    config_class: type[PolyheadConfig]
    #: ``ConfigTester``'s ``has_text_modality`` / ``common_properties``
    has_text_modality = False
    common_properties: list[str] | None = None

    def setUp(self) -> None:
        self.model_tester = self.model_tester_class(self)
        self.labels = self.model_tester.prepare_labels()  # drawn once: two calls must see the same labels
        self.config_tester = ConfigTester(self, config_class=self.config_class, has_text_modality=self.has_text_modality,
                                          common_properties=self.common_properties)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:
            inputs_dict.update(copy.deepcopy(self.labels))
        return inputs_dict

    def test_config(self) -> None:
        self.config_tester.run_common_tests()


_NO_TOKENS = ("This model's inputs are not token ids (pixels, audio features, series, observations, feature rows): "
              "it has no input embeddings to get, set or resize, as transformers' ConvNext / Wav2Vec2 / "
              "DecisionTransformer tests say")


class _NoTokenInputsTest(_PolyheadModelTest):
    """Models whose inputs are not token ids: transformers' input-embedding tests do not apply."""

    @unittest.skip(reason=_NO_TOKENS)
    def test_inputs_embeds(self) -> None:
        pass

    @unittest.skip(reason=_NO_TOKENS)
    def test_inputs_embeds_matches_input_ids(self) -> None:
        pass

    @unittest.skip(reason=_NO_TOKENS)
    def test_model_get_set_embeddings(self) -> None:
        pass

    @unittest.skip(reason=_NO_TOKENS)
    def test_resize_tokens_embeddings(self) -> None:
        pass

    @unittest.skip(reason=_NO_TOKENS)
    def test_resize_embeddings_untied(self) -> None:
        pass

    @unittest.skip(reason=_NO_TOKENS)
    def test_resize_embeddings_untied_no_reinit_on_post_init(self) -> None:
        pass


class _PyramidModelTest(_NoTokenInputsTest):
    """Image and volume models (ConvNeXt / Swin backbones): what transformers' ConvNext tests skip, skipped alike."""

    has_attentions = False  # ConvNeXt has no attention; polyhead's Swin (MONAI's) does not return its weights
    common_properties = ["hidden_size", "num_hidden_layers"]

    def test_hidden_states_output(self) -> None:
        """As transformers' ConvNext test: one map per stage plus the stem's, the first at the stem's stride."""
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            for by_config in (False, True):
                config.output_hidden_states = by_config
                model = model_class(config).eval()
                inputs = self._prepare_for_class(inputs_dict, model_class)
                with torch.no_grad():
                    outputs = model(**inputs, **({} if by_config else {"output_hidden_states": True}))
                hidden_states = outputs.hidden_states
                first = model.backbone.feature_info[0]
                self.assertEqual(len(hidden_states), self.model_tester.num_stages + 1)
                pixels = inputs["pixel_values"]
                self.assertListEqual(
                    list(hidden_states[0].shape[1:]),
                    [first["num_chs"], *(size // first["reduction"] for size in pixels.shape[2:])],
                )


class _TextFreeSequenceModelTest(_NoTokenInputsTest):
    """Sequence models whose inputs are not token ids (series, audio, observations, feature rows)."""


# -- segmentation -------------------------------------------------------------------------------------------------
class SegmentationModelTester(_PolyheadModelTester):
    patch = 16  # three ConvNeXt stages (strides 4, 8, 16) keep the volumes small

    def get_config(self) -> SegmentationConfig:
        return SegmentationConfig(
            patch_size=[self.patch] * 3, sw_overlap=0.0,
            backbone={"type": "convnext", "depths": [1, 1, 1], "dims": [4, 8, 8]},
            head={"type": "unetr_decoder", "feature_size": 4, "identity_skip_levels": [-1]},
        )

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.randn(self.batch_size, 1, *(self.patch,) * 3)}

    def prepare_labels(self) -> dict[str, torch.Tensor]:
        return {"labels": torch.randint(0, 3, (self.batch_size, 1, *(self.patch,) * 3))}


class PolyheadForSegmentationTest(_PyramidModelTest, unittest.TestCase):
    all_model_classes = (PolyheadForSegmentation,)
    model_tester_class = SegmentationModelTester
    config_class = SegmentationConfig


# -- detection ----------------------------------------------------------------------------------------------------
class DetectionModelTester(_PolyheadModelTester):
    image = 32  # the stride-16 map is 2x2: GroupNorm needs more than one value per group

    def get_config(self) -> DetectionConfig:
        return DetectionConfig(
            id2label={0: "face", 1: "bag", 2: "shoe"}, image_size=self.image,
            backbone={"type": "convnext", "spatial_dims": 2, "in_channels": 3, "depths": [1, 1, 1], "dims": [4, 8, 8]},
            # fpn_channels: the towers' GroupNorm has 32 groups; min_reduction 4: every stage feeds the head (all trained)
            head={"type": "fcos", "fpn_channels": 32, "num_convs": 1, "min_reduction": 4},
        )

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.randn(self.batch_size, 3, self.image, self.image)}

    def prepare_labels(self) -> dict[str, torch.Tensor]:
        boxes = torch.tensor([[2.0, 3.0, 20.0, 25.0]])
        return {"labels": [{"class_labels": torch.tensor([i % 3]), "boxes": boxes} for i in range(self.batch_size)]}


class PolyheadForObjectDetectionTest(_PyramidModelTest, unittest.TestCase):
    all_model_classes = (PolyheadForObjectDetection,)
    model_tester_class = DetectionModelTester
    config_class = DetectionConfig


# -- speech recognition -------------------------------------------------------------------------------------------
class CTCModelTester(_PolyheadModelTester):
    frames = 32
    n_mels = 8
    seq_length = 8  # ceil(frames / 4): the stem subsamples 4x

    def get_config(self) -> ASRConfig:
        return ASRConfig(
            vocab=["<pad>", "<unk>", "|", "a", "b", "c"], n_mels=self.n_mels, spec_augment=False,
            backbone={"type": "conformer", "dim": 8, "depth": 2, "num_heads": 2, "ffn_dim": 16, "kernel_size": 3},
            head={"type": "ctc"},
        )

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        mask = torch.ones(self.batch_size, self.frames, dtype=torch.long)
        mask[-1, -5:] = 0
        return {"input_features": torch.randn(self.batch_size, self.frames, self.n_mels), "attention_mask": mask}

    def prepare_labels(self) -> dict[str, torch.Tensor]:
        return {"labels": torch.tensor([[3, 4, 5], [4, 3, -100]])}


class PolyheadForCTCTest(_TextFreeSequenceModelTest, unittest.TestCase):
    all_model_classes = (PolyheadForCTC,)
    model_tester_class = CTCModelTester
    config_class = ASRConfig


# -- forecasting --------------------------------------------------------------------------------------------------
class ForecastingModelTester(_PolyheadModelTester):
    context_length = 16
    horizon = 4
    channels = 2
    seq_length = 3  # patches of 8 every 4 steps over 16 steps

    def get_config(self) -> ForecastingConfig:
        return ForecastingConfig(
            context_length=self.context_length, horizon=self.horizon, num_channels=self.channels, target_columns=["a", "b"],
            patch_length=8, patch_stride=4,
            backbone={"type": "transformer", "dim": 8, "depth": 2, "num_heads": 2, "max_length": 8},
            head={"type": "forecast", "quantiles": [0.1, 0.5, 0.9]},
        )

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        return {"past_values": torch.randn(self.batch_size, self.context_length, self.channels)}

    def prepare_labels(self) -> dict[str, torch.Tensor]:
        return {"future_values": torch.randn(self.batch_size, self.horizon, self.channels)}


class PolyheadForForecastingTest(_TextFreeSequenceModelTest, unittest.TestCase):
    all_model_classes = (PolyheadForForecasting,)
    model_tester_class = ForecastingModelTester
    config_class = ForecastingConfig


# -- recommendation -----------------------------------------------------------------------------------------------
class NextItemModelTester(_PolyheadModelTester):
    num_items = 20
    seq_length = 6

    def get_config(self) -> NextItemConfig:
        return NextItemConfig(
            max_length=self.seq_length, item_vocab=[str(i) for i in range(1, self.num_items + 1)],
            backbone={"type": "transformer", "dim": 8, "depth": 2, "num_heads": 2, "max_length": self.seq_length},
            head={"type": "next_item"},
        )

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        input_ids = torch.randint(0, self.num_items, (self.batch_size, self.seq_length))
        input_ids[-1, :2] = self.num_items  # left padding
        return {"input_ids": input_ids}

    def prepare_labels(self) -> dict[str, torch.Tensor]:
        return {"labels": torch.randint(0, self.num_items, (self.batch_size,))}


class PolyheadForNextItemTest(_PolyheadModelTest, unittest.TestCase):
    all_model_classes = (PolyheadForNextItem,)
    model_tester_class = NextItemModelTester
    config_class = NextItemConfig
    has_text_modality = False  # item ids, not a text vocabulary: no vocab_size


class CTRModelTester(_PolyheadModelTester):
    seq_length = 3  # one token per field

    def get_config(self) -> CTRConfig:
        return CTRConfig(
            fields=[
                {"name": "user_id", "kind": "categorical", "vocab": [str(i) for i in range(1, 6)]},
                {"name": "genre", "kind": "categorical", "vocab": ["Action", "Comedy", "Drama"]},
                {"name": "age", "kind": "numeric", "mean": 30.0, "std": 10.0},
            ],
            backbone={"type": "transformer", "dim": 8, "depth": 2, "num_heads": 2, "position": "none"},
            head={"type": "ctr", "hidden_dims": [8]},
        )

    batch_size = 7  # the eager/SDPA test pads smaller batches to 7 with random floats, not valid ids

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        ids = torch.stack([torch.randint(0, 6, (self.batch_size,)), torch.randint(0, 4, (self.batch_size,))], dim=1)
        return {"features": torch.cat([ids.float(), torch.randn(self.batch_size, 1)], dim=1)}

    def prepare_labels(self) -> dict[str, torch.Tensor]:
        return {"labels": torch.randint(0, 2, (self.batch_size,)).float()}


class PolyheadForCTRTest(_TextFreeSequenceModelTest, unittest.TestCase):
    all_model_classes = (PolyheadForCTR,)
    model_tester_class = CTRModelTester
    config_class = CTRConfig

    @unittest.skip(reason="CTR's id table concatenates every categorical field's vocabulary (an offset per field): rows "
                          "added at its end are not new tokens; a field's vocabulary grows with the processor's schema")
    def test_resize_tokens_embeddings(self) -> None:
        pass


# -- reinforcement learning ---------------------------------------------------------------------------------------
_CARTPOLE = {"env_id": "CartPole-v1", "context_length": 4, "observation_space": {"type": "box", "shape": [4]},
             "action_space": {"type": "discrete", "n": 2}}


class PPOModelTester(_PolyheadModelTester):
    is_training = False  # PPO learns from rollouts (polyhead.tasks.rl.ppo), not from labels: the forward has no loss
    seq_length = 4

    def get_config(self) -> PPOConfig:
        return PPOConfig(
            **_CARTPOLE, head={"type": "actor_critic", "hidden_dim": 8},
            backbone={"type": "transformer", "dim": 8, "depth": 2, "num_heads": 2, "max_length": 4, "residual": "gru"},
        )

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        mask = torch.ones(self.batch_size, 4, dtype=torch.long)
        mask[-1, :1] = 0
        return {"observations": torch.randn(self.batch_size, 4, 4), "attention_mask": mask}

    def prepare_labels(self) -> dict[str, torch.Tensor]:
        return {}


class PolyheadForPPOTest(_TextFreeSequenceModelTest, unittest.TestCase):
    all_model_classes = (PolyheadForPPO,)
    model_tester_class = PPOModelTester
    config_class = PPOConfig


class DecisionTransformerModelTester(_PolyheadModelTester):
    batch_size = 7  # the eager/SDPA test pads smaller batches to 7 with random values, not valid actions
    steps = 4
    seq_length = 12  # (return-to-go, state, action) tokens per step

    def get_config(self) -> DecisionTransformerConfig:
        return DecisionTransformerConfig(
            **_CARTPOLE, max_timestep=16, return_scale=100.0, target_return=100.0, head={"type": "dt_action"},
            backbone={"type": "transformer", "dim": 8, "depth": 2, "num_heads": 2, "position": "none", "max_length": 12},
        )

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        b, k = self.batch_size, self.steps
        return {"observations": torch.randn(b, k, 4), "actions": torch.randint(0, 2, (b, k)),
                "returns_to_go": torch.full((b, k, 1), 50.0), "timesteps": torch.arange(k).expand(b, k).clone(),
                "attention_mask": torch.ones(b, k, dtype=torch.long)}

    def prepare_labels(self) -> dict[str, torch.Tensor]:
        return {"labels": torch.randint(0, 2, (self.batch_size, self.steps))}


class PolyheadForDecisionTransformerTest(_TextFreeSequenceModelTest, unittest.TestCase):
    all_model_classes = (PolyheadForDecisionTransformer,)
    model_tester_class = DecisionTransformerModelTester
    config_class = DecisionTransformerConfig
    additional_model_inputs = ["actions", "returns_to_go", "timesteps"]  # beside observations (the main input)
