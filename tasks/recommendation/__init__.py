"""Recommendation: sequential next-item retrieval and CTR ranking on the shared backbone.

Two objectives, two model types, each a backbone + its task adapter:
:class:`PolyheadForNextItem` (``polyhead-next-item``, SASRec-style: histories in, the catalogue
ranked) and :class:`PolyheadForCTR` (``polyhead-ctr``: feature fields in, a click probability
out, optionally with Hiformer's heterogeneous attention). A config file's ``model.objective``
(``"next_item"`` or ``"ctr"``) picks one; both share :class:`RecommendationConfig`'s backbone,
the processor and the ``recommendation`` pipeline.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import AutoFeatureExtractor, AutoModel

from polyhead.configuration import register_auto_config
from polyhead.errors import DataError, InputError
from polyhead.export import ExportSpec
from polyhead.registry import register_task
from polyhead.streaming import StreamRows

from .._base import Task, TaskData
from .configuration import CTRConfig, NextItemConfig, RecommendationConfig, config_class_for, objective_of_section
from .data import (
    ML100K,
    CTRRows,
    NextItemTargets,
    NextItemWindows,
    collate_recommendation,
    fetch_movielens_100k,
    leave_one_out,
    load_interactions,
)
from .metrics import CTRMetrics, NextItemMetrics, bpr_matrix_factorisation, logistic_regression, most_popular_scores
from .modeling import CTRAdapter, CTROutput, NextItemAdapter, NextItemOutput, PolyheadForCTR, PolyheadForNextItem
from .processing import RecommendationProcessor

__all__ = [
    "CTRAdapter",
    "CTRConfig",
    "CTRMetrics",
    "CTROutput",
    "NextItemAdapter",
    "NextItemConfig",
    "NextItemMetrics",
    "NextItemOutput",
    "PolyheadForCTR",
    "PolyheadForNextItem",
    "RecommendationConfig",
    "RecommendationProcessor",
    "RecommendationTask",
    "fetch_movielens_100k",
]

for _config_class, _model_class in ((NextItemConfig, PolyheadForNextItem), (CTRConfig, PolyheadForCTR)):
    register_auto_config(_config_class)
    AutoModel.register(_config_class, _model_class)
    AutoFeatureExtractor.register(_config_class, RecommendationProcessor)

_DATA_KEYS = ("source", "label_column", "val_fraction", "test_fraction", "split_seed", "bpr_epochs", "min_interactions")


def _is_int_like(values: list[str]) -> bool:
    return all(v.lstrip("-").isdigit() for v in values)


def _sorted_ids(values: pd.Series) -> list[str]:
    unique = sorted(set(values.astype(str)))
    return sorted(unique, key=int) if _is_int_like(unique) else unique


@functools.lru_cache(maxsize=4)
def _cached_interactions(source: str) -> pd.DataFrame:
    return load_interactions(source)


def _interactions(source: Any) -> pd.DataFrame:
    return _cached_interactions(source).copy() if isinstance(source, str) else load_interactions(source)


@register_task("recommendation")
class RecommendationTask(Task):
    """Next-item recommendation (leave-one-out, all-item ranking) or CTR prediction."""

    name = "recommendation"
    pipeline_task = "recommendation"
    domain = "recommender-systems"
    models = (PolyheadForNextItem, PolyheadForCTR)
    processor_class = RecommendationProcessor
    default_config = "recommendation/sasrec_ml100k.py"
    best_metric = "loss"
    greater_is_better = False
    data_options = _DATA_KEYS
    prediction_files = 'a JSON file: {"history": [item ids]} (next-item) or {field: value} (CTR), a list of them, or JSON lines'

    def prediction_input(self, path: str) -> Any:
        """A JSON file of one request, a list of requests, or JSON lines (one request per line)."""
        file = Path(path)
        if not file.is_file():
            raise InputError(f"Input file {path} does not exist; recommendation reads {self.prediction_files}.")
        text = file.read_text(encoding="utf-8", errors="replace").strip()
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            try:
                return [json.loads(line) for line in text.splitlines() if line.strip()]
            except json.JSONDecodeError as err:
                raise InputError(f"{path} is neither JSON nor JSON lines ({err}); recommendation reads {self.prediction_files}.") from None

    # -- config ------------------------------------------------------------------------
    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> RecommendationConfig:
        """The config ``model.objective`` names (default: the head's type, else next-item), filled from the data:
        the item vocabulary (next-item) or the fields' vocabularies and statistics (CTR)."""
        self.check_data_section(data_section)
        section = dict(model_section)
        config_class = config_class_for(objective_of_section(section))
        section.pop("objective", None)
        backbone = section.get("backbone")
        if isinstance(backbone, Mapping) and "causal" in backbone:  # polyhead 0.1 config files: the adapter attends causally, per call
            section["backbone"] = {k: v for k, v in backbone.items() if k != "causal"}
        config = config_class.from_model_section(section)
        frame = _interactions(data_section.get("source", ML100K))
        if isinstance(config, NextItemConfig):
            self._fill_catalogue(config, frame)
        else:
            self._fill_fields(config, frame)
        return config

    @staticmethod
    def _fill_catalogue(config: NextItemConfig, frame: pd.DataFrame) -> None:
        if config.item_vocab:
            return
        vocab = _sorted_ids(frame["item_id"])
        config.item_vocab = vocab
        config.item_id_type = "int" if _is_int_like(vocab) else "str"
        if "title" in frame.columns:
            titles = frame.drop_duplicates("item_id").set_index("item_id")["title"].astype(str)
            config.item_titles = [titles.get(i, "") for i in vocab]

    @staticmethod
    def _fill_fields(config: CTRConfig, frame: pd.DataFrame) -> None:
        fields = []
        for field in config.fields:
            field = dict(field)
            name = field["name"]
            if name not in frame.columns:
                raise DataError(f"Field {name!r} is not a column of the data; columns: {list(frame.columns)}.")
            if field["kind"] == "categorical" and not field.get("vocab"):
                field["vocab"] = _sorted_ids(frame[name])
            elif field["kind"] == "numeric" and "mean" not in field:
                values = pd.to_numeric(frame[name], errors="coerce")
                if values.isna().any():
                    raise DataError(f"Numeric field {name!r} has non-numeric or missing values.")
                field["mean"], field["std"] = float(values.mean()), float(values.std() or 1.0)
            fields.append(field)
        config.fields = fields

    def build_processor(self, config: RecommendationConfig) -> RecommendationProcessor:
        return RecommendationProcessor.from_config(config)

    # -- data --------------------------------------------------------------------------
    def build_data(self, data_section: Mapping[str, Any], config: RecommendationConfig) -> TaskData:
        self.check_data_section(data_section)
        source = data_section.get("source", ML100K)
        frame = _interactions(source)
        if isinstance(config, NextItemConfig):
            return self._next_item_data(frame, config, source, int(data_section.get("min_interactions", 3)), int(data_section.get("bpr_epochs", 30)))
        return self._ctr_data(frame, config, source, data_section)

    def _next_item_data(self, frame: pd.DataFrame, config: NextItemConfig, source: Any, min_interactions: int, bpr_epochs: int) -> TaskData:
        index = {item: i for i, item in enumerate(config.item_vocab)}
        unknown = set(frame["item_id"]) - set(index)
        if unknown:
            raise DataError(f"{len(unknown)} item id(s) of the data are not in the model's vocabulary, e.g. {sorted(unknown)[:5]}.")
        seqs = leave_one_out(frame, index, min_interactions=min_interactions)
        pad = config.num_items
        train = NextItemWindows(seqs.train, max_length=config.max_length, pad=pad)
        validation = NextItemTargets(seqs.train, seqs.valid_target, max_length=config.max_length, pad=pad, users=seqs.users)
        test_histories = [h + [v] for h, v in zip(seqs.train, seqs.valid_target)]
        test = NextItemTargets(test_histories, seqs.test_target, max_length=config.max_length, pad=pad, users=seqs.users)
        test.bpr_epochs = bpr_epochs  # read by baselines()
        description = {
            "source": str(source),
            "objective": "next_item",
            "protocol": "leave-one-out by time per user; ranked against all items; history items masked",
            "users": len(seqs.users),
            "items": config.num_items,
            "interactions": int(len(frame)),
            "splits": {
                "train": {"samples": len(train), "what": f"windows of <= {config.max_length} items, every position predicts the next"},
                "validation": {"samples": len(validation), "what": "each user's second-to-last item"},
                "test": {"samples": len(test), "what": "each user's last item"},
            },
        }
        # data.streaming: the training windows as a stream (the table is read whole: leave-one-out needs each user's history)
        return TaskData(train=train, validation=validation, test=test, collate_fn=functools.partial(collate_recommendation, pad=pad),
                        description=description, train_stream=StreamRows.of_indices(train))

    def _ctr_data(self, frame: pd.DataFrame, config: CTRConfig, source: Any, data_section: Mapping[str, Any]) -> TaskData:
        label_column = data_section.get("label_column")
        if label_column:
            if label_column not in frame.columns:
                raise DataError(f"label_column {label_column!r} is not a column; columns: {list(frame.columns)}.")
            labels = pd.to_numeric(frame[label_column], errors="coerce")
            if labels.isna().any() or not labels.isin([0, 1]).all():
                raise DataError(f"label_column {label_column!r} must hold 0/1 clicks.")
            labels = labels.to_numpy(dtype=np.float32)
        elif "rating" in frame.columns:
            labels = (frame["rating"].astype(float) >= config.rating_threshold).to_numpy(dtype=np.float32)
        else:
            raise DataError("CTR data needs a 0/1 label column (data.label_column) or a 'rating' column.")
        try:  # the processor's encoder: the pipeline encodes a served row with the same code
            features = RecommendationProcessor.from_config(config).encode_columns(frame, on_unknown="skip")
        except InputError as err:
            raise DataError(f"The CTR data cannot be encoded as the model's inputs: {err}") from None
        val_fraction = float(data_section.get("val_fraction", 0.1))
        test_fraction = float(data_section.get("test_fraction", 0.1))
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise DataError(f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, got {val_fraction}, {test_fraction}.")
        order = np.random.default_rng(int(data_section.get("split_seed", 0))).permutation(len(frame))
        n_test, n_val = int(round(len(frame) * test_fraction)), int(round(len(frame) * val_fraction))
        parts = {"test": order[:n_test], "validation": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        rows = {name: CTRRows(features[idx], labels[idx], rows=idx) for name, idx in parts.items()}
        description = {
            "source": str(source),
            "objective": "ctr",
            "label": label_column or f"rating >= {config.rating_threshold}",
            "fields": [f["name"] for f in config.fields],
            "split": f"random rows (seed {int(data_section.get('split_seed', 0))}), {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%}",
            "splits": {name: {"rows": len(r), "click_rate": round(float(r.labels.mean()), 4)} for name, r in rows.items()},
        }
        # data.streaming: the encoded training rows as a stream (the table is read whole: the split is by a seeded permutation)
        return TaskData(**rows, collate_fn=collate_recommendation, description=description, train_stream=StreamRows.of_indices(rows["train"]))

    # -- metrics and baselines ---------------------------------------------------------
    def build_metrics(self, config: RecommendationConfig) -> NextItemMetrics | CTRMetrics:
        return NextItemMetrics(k=10) if isinstance(config, NextItemConfig) else CTRMetrics()

    def baselines(self, data: TaskData, config: RecommendationConfig) -> dict[str, dict[str, float]]:
        test = data.test
        if isinstance(config, NextItemConfig):
            targets = torch.tensor(test.targets)
            popular = most_popular_scores(test.histories, config.num_items).expand(len(test), -1)
            bpr = bpr_matrix_factorisation(test.histories, config.num_items, epochs=getattr(test, "bpr_epochs", 30))
            return {
                "most_popular": NextItemMetrics.of_scores(popular, targets, test.histories),
                "bpr_mf": NextItemMetrics.of_scores(bpr, targets, test.histories),
            }
        train = data.train
        sizes = [config.field_size(f) for f in config.categorical_fields]
        kinds = [f["kind"] for f in config.fields]
        probabilities = logistic_regression((train.features, train.labels), test.features, kinds=kinds, sizes=sizes)
        metrics = CTRMetrics()
        metrics.update({"probabilities": probabilities, "labels": test.labels})
        return {"logistic_regression": metrics.compute()}

    # -- export ------------------------------------------------------------------------
    def export_spec(self, config: RecommendationConfig) -> ExportSpec:
        """Next-item: ``input_ids (batch, max_length)`` -> ``scores``; CTR: ``features (batch, F)`` -> logits, probabilities.

        The batch is dynamic; the history length is fixed at ``max_length`` because the
        processor always left-pads to it (the positions the model was trained with).
        """
        if isinstance(config, NextItemConfig):
            def make_items(sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
                ids = torch.randint(0, config.num_items, (sizes["batch"], config.max_length))
                lengths = torch.randint(1, config.max_length + 1, (sizes["batch"],))
                pad = torch.arange(config.max_length)[None] < (config.max_length - lengths)[:, None]
                return {"input_ids": ids.masked_fill(pad, config.num_items)}

            return ExportSpec(
                input_names=["input_ids"], output_names=["scores"], output_class=NextItemOutput,
                make_inputs=make_items, dynamic_axes={"input_ids": {0: "batch"}},
            )
        fields = config.fields

        def make_rows(dims: Mapping[str, int]) -> dict[str, torch.Tensor]:
            batch = dims["batch"]
            columns = [
                torch.randn(batch) if f["kind"] == "numeric" else torch.randint(0, config.field_size(f), (batch,)).float()
                for f in fields
            ]
            return {"features": torch.stack(columns, dim=1)}

        return ExportSpec(
            input_names=["features"], output_names=["logits", "probabilities"], output_class=CTROutput,
            make_inputs=make_rows, dynamic_axes={"features": {0: "batch"}},
        )

    @classmethod
    def example_configs(cls) -> list[RecommendationConfig]:
        """A tiny next-item config, and a tiny CTR config with every field kind and the Hiformer interaction."""
        return [
            NextItemConfig(
                max_length=8,
                item_vocab=[str(i) for i in range(1, 41)],
                backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 8},
                head={"type": "next_item"},
            ),
            CTRConfig(
                fields=[
                    {"name": "user_id", "kind": "categorical", "vocab": [str(i) for i in range(1, 11)]},
                    {"name": "item_id", "kind": "categorical", "vocab": [str(i) for i in range(1, 21)]},
                    {"name": "genre", "kind": "categorical", "vocab": ["Action", "Comedy", "Drama"]},
                    {"name": "age", "kind": "numeric", "mean": 30.0, "std": 10.0},
                    {"name": "year", "kind": "bucketized", "boundaries": [1980, 1990, 2000]},
                ],
                backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "none"},
                head={"type": "ctr", "interaction": "hiformer", "hidden_dims": [16]},
            ),
        ]
