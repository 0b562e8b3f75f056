"""Recommendation: sequential next-item retrieval and CTR ranking on the shared backbone.

One task with two objectives, chosen by the head: ``next_item`` (SASRec-style,
histories in, the catalogue ranked) and ``ctr`` (feature fields in, a click
probability out, optionally with Hiformer's heterogeneous attention). They share
the config class (item vocabulary + field schema), the model class, the processor
and the ``recommendation`` pipeline, so a user picks the objective in the recipe.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from polyhead.errors import DataError
from polyhead.export import ExportSpec
from polyhead.registry import register_task

from .._base import Task, TaskData
from .configuration import RecommendationConfig
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
from .modeling import PolyheadForRecommendation, RecommendationOutput
from .processing import RecommendationProcessor

__all__ = [
    "RecommendationConfig",
    "RecommendationProcessor",
    "RecommendationOutput",
    "RecommendationTask",
    "PolyheadForRecommendation",
    "NextItemMetrics",
    "CTRMetrics",
    "fetch_movielens_100k",
]

AutoConfig.register(RecommendationConfig.model_type, RecommendationConfig)
AutoModel.register(RecommendationConfig, PolyheadForRecommendation)
AutoFeatureExtractor.register(RecommendationConfig, RecommendationProcessor)

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
    config_class = RecommendationConfig
    model_class = PolyheadForRecommendation
    processor_class = RecommendationProcessor
    default_config = "recommendation/sasrec_ml100k.py"
    best_metric = "loss"
    greater_is_better = False
    data_options = _DATA_KEYS

    # -- config ------------------------------------------------------------------------
    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> RecommendationConfig:
        """The model section, with the item vocabulary / field vocabularies filled from the data."""
        self.check_data_section(data_section)
        config = RecommendationConfig.from_model_section(model_section)
        frame = _interactions(data_section.get("source", ML100K))
        if config.objective == "next_item":
            if not config.item_vocab:
                vocab = _sorted_ids(frame["item_id"])
                config.item_vocab = vocab
                config.item_id_type = "int" if _is_int_like(vocab) else "str"
                if "title" in frame.columns:
                    titles = frame.drop_duplicates("item_id").set_index("item_id")["title"].astype(str)
                    config.item_titles = [titles.get(i, "") for i in vocab]
            return config
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
        return config

    def build_processor(self, config: RecommendationConfig) -> RecommendationProcessor:
        return RecommendationProcessor.from_config(config)

    # -- data --------------------------------------------------------------------------
    def build_data(self, data_section: Mapping[str, Any], config: RecommendationConfig) -> TaskData:
        self.check_data_section(data_section)
        source = data_section.get("source", ML100K)
        frame = _interactions(source)
        if config.objective == "next_item":
            return self._next_item_data(frame, config, source, int(data_section.get("min_interactions", 3)), int(data_section.get("bpr_epochs", 30)))
        return self._ctr_data(frame, config, source, data_section)

    def _next_item_data(self, frame: pd.DataFrame, config: RecommendationConfig, source: Any, min_interactions: int, bpr_epochs: int) -> TaskData:
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
        return TaskData(train=train, validation=validation, test=test, collate_fn=functools.partial(collate_recommendation, pad=pad), description=description)

    def _ctr_data(self, frame: pd.DataFrame, config: RecommendationConfig, source: Any, data_section: Mapping[str, Any]) -> TaskData:
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
        processor = RecommendationProcessor.from_config(config)
        features = np.zeros((len(frame), len(config.fields)), dtype=np.float32)
        for j, field in enumerate(config.fields):
            column = frame[field["name"]]
            if field["kind"] == "bucketized":
                features[:, j] = np.searchsorted(field["boundaries"], pd.to_numeric(column).to_numpy(dtype=float), side="right")
            elif field["kind"] == "numeric":
                features[:, j] = (pd.to_numeric(column).to_numpy(dtype=float) - field["mean"]) / (field["std"] or 1.0)
            else:
                features[:, j] = column.astype(str).map(processor._vocab(field["name"])).fillna(0).to_numpy(dtype=np.float32)
        val_fraction = float(data_section.get("val_fraction", 0.1))
        test_fraction = float(data_section.get("test_fraction", 0.1))
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise DataError(f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, got {val_fraction}, {test_fraction}.")
        order = np.random.default_rng(int(data_section.get("split_seed", 0))).permutation(len(frame))
        n_test, n_val = int(round(len(frame) * test_fraction)), int(round(len(frame) * val_fraction))
        parts = {"test": order[:n_test], "validation": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        rows = {name: CTRRows(features[idx], labels[idx]) for name, idx in parts.items()}
        description = {
            "source": str(source),
            "objective": "ctr",
            "label": label_column or f"rating >= {config.rating_threshold}",
            "fields": [f["name"] for f in config.fields],
            "split": f"random rows (seed {int(data_section.get('split_seed', 0))}), {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%}",
            "splits": {name: {"rows": len(r), "click_rate": round(float(r.labels.mean()), 4)} for name, r in rows.items()},
        }
        return TaskData(**rows, collate_fn=collate_recommendation, description=description)

    # -- metrics and baselines ---------------------------------------------------------
    def build_metrics(self, config: RecommendationConfig) -> NextItemMetrics | CTRMetrics:
        return NextItemMetrics(k=10) if config.objective == "next_item" else CTRMetrics()

    def baselines(self, data: TaskData, config: RecommendationConfig) -> dict[str, dict[str, float]]:
        test = data.test
        if config.objective == "next_item":
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
        if config.objective == "next_item":
            def make_items(sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
                ids = torch.randint(0, config.num_items, (sizes["batch"], config.max_length))
                lengths = torch.randint(1, config.max_length + 1, (sizes["batch"],))
                pad = torch.arange(config.max_length)[None] < (config.max_length - lengths)[:, None]
                return {"input_ids": ids.masked_fill(pad, config.num_items)}

            return ExportSpec(
                input_names=["input_ids"], output_names=["scores"], output_class=RecommendationOutput,
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
            input_names=["features"], output_names=["logits", "probabilities"], output_class=RecommendationOutput,
            make_inputs=make_rows, dynamic_axes={"features": {0: "batch"}},
        )

    @classmethod
    def example_config(cls) -> RecommendationConfig:
        return RecommendationConfig(
            max_length=8,
            item_vocab=[str(i) for i in range(1, 41)],
            backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "causal": True, "max_length": 8},
            head={"type": "next_item"},
        )

    @classmethod
    def example_ctr_config(cls) -> RecommendationConfig:
        """A tiny CTR config with every field kind and the Hiformer interaction."""
        return RecommendationConfig(
            fields=[
                {"name": "user_id", "kind": "categorical", "vocab": [str(i) for i in range(1, 11)]},
                {"name": "item_id", "kind": "categorical", "vocab": [str(i) for i in range(1, 21)]},
                {"name": "genre", "kind": "categorical", "vocab": ["Action", "Comedy", "Drama"]},
                {"name": "age", "kind": "numeric", "mean": 30.0, "std": 10.0},
                {"name": "year", "kind": "bucketized", "boundaries": [1980, 1990, 2000]},
            ],
            backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "causal": False, "position": "none"},
            head={"type": "ctr", "interaction": "hiformer", "hidden_dims": [16]},
        )
