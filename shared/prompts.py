"""What the AI provider can serve, and the instructions it sends for the text tasks.

Kept apart from ``shared.ai`` so that ``submit_job`` can refuse a task type the
provider cannot serve without loading the openai SDK on its cold start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROMPTS: dict[str, str] = {
    "summarize": "Summarize the user's text clearly and concisely.",
    "translate": "Translate the user's text into {target_language}. Reply with the translation only.",
    "generate_text": "You are a helpful writer. Write what the user asks for.",
}

# Served without a prompt: chat sends the user's own messages, images the images API.
_WITHOUT_PROMPT = frozenset({"chat", "generate_image"})

_TRANSLATE_FROM = (
    "Translate the user's text from {source_language} into {target_language}. "
    "Reply with the translation only."
)


TOKENS_PER_WORD = 2
"""Room per requested word in a summary's token cap: English runs about 1.3 tokens a word."""


def max_tokens(task_type: str, options: Mapping[str, Any]) -> int | None:
    """The completion's token cap: the client's ``max_tokens``, or one that bounds a summary
    to its ``max_words``, so a model that ignores the instruction still stops near it."""
    if "max_tokens" in options:
        return int(options["max_tokens"])
    if task_type == "summarize" and "max_words" in options:
        return int(options["max_words"]) * TOKENS_PER_WORD + 16
    return None


def supported(task_type: str) -> bool:
    """Whether the provider can serve ``task_type`` (a catalog entry alone is not enough)."""
    return task_type in PROMPTS or task_type in _WITHOUT_PROMPT


def instruction(task_type: str, options: Mapping[str, Any]) -> str:
    """The system message for a text task.

    Raises ``KeyError`` for a task type without a prompt, or when the prompt needs an
    option that ``options`` lacks.
    """
    template = PROMPTS[task_type]
    if task_type == "translate" and "source_language" in options:
        template = _TRANSLATE_FROM
    text = template.format_map(options)
    if task_type == "summarize" and "max_words" in options:
        text += f" Use at most {options['max_words']} words."
    return text
