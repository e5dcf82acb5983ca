"""Composed models and baselines."""

from personakit.models.icl import (
    HIST_SYSTEM_PROMPT,
    TST_SYSTEM_PROMPT,
    ICLPromptBuilder,
    ICLPromptBuilderConfig,
    ICLResponder,
    ICLResponderConfig,
)

__all__ = [
    "HIST_SYSTEM_PROMPT",
    "TST_SYSTEM_PROMPT",
    "ICLPromptBuilder",
    "ICLPromptBuilderConfig",
    "ICLResponder",
    "ICLResponderConfig",
]
