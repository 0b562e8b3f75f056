"""Registers the pytest markers transformers' common tests use (transformers' own ``conftest.py`` does so there)."""

from __future__ import annotations

import pytest

_MARKERS = {
    "accelerate_tests": "needs accelerate",
    "flash_attn_test": "needs flash-attention",
    "flash_attn_3_test": "needs flash-attention 3",
    "flash_attn_4_test": "needs flash-attention 4",
    "is_agent_test": "transformers agents",
    "is_expert_parallel_test": "expert parallelism",
    "is_fsdp_test": "FSDP",
    "is_pipeline_test": "transformers pipelines",
    "is_staging_test": "the Hub's staging server",
    "is_tensor_parallel_test": "tensor parallelism",
    "is_training_test": "training tests",
    "order": "test ordering (pytest-order)",
    "torch_compile_test": "torch.compile",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, what in _MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {what} (transformers' common tests)")
