"""The question corpus: generated questions, subtopic clusters and subtopic-held-out splits.

Computed fields live on ``Question`` (``subtopic``, ``subtopic_split``, ``provenance``); ``import_questions``
never writes them, so re-importing a file keeps them.

Clustering design (fixed a priori; ``Question.topic`` is never read to fit, only to report NMI/ARI):

1. Each question is embedded with MiniLM as the normalised mean of the embeddings of its text and of its
   affirming statement (when it has one): two phrasings of one proposition, less noise than either. The
   embeddings are reduced to ``PCA_DIMS`` dimensions by PCA and normalised again.
2. Lexical features: TF-IDF (words and bigrams, English stop words dropped, sublinear) of question and
   affirming statement, reduced by truncated SVD to ``LSA_DIMS`` dimensions (LSA) and normalised. They catch
   shared key words (a country, an institution) that sentence embeddings blur. Both parts are concatenated,
   the lexical one weighted by ``LSA_WEIGHT``, and normalised.
3. Consensus (evidence-accumulation) clustering: ``ENSEMBLE_RUNS`` k-means runs (one restart each, a different
   seed and a K drawn from ``ENSEMBLE_K_SPREAD`` times the target K) vote on every pair of questions; the
   share of runs that put two questions together is their co-association.
4. Average-linkage agglomerative clustering of ``1 - co-association`` cut at K clusters.

K is fixed in advance (default 110, the number of topics the seed study used); the weights and sizes above
were fixed once (a few settings tried on the Habermas questions, see benchmarks/topics.py) and are not tuned
per corpus. All randomness comes from ``seed``: the result is reproducible on one machine.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_K = 110
ENSEMBLE_RUNS = 30
PCA_DIMS = 64
LSA_DIMS = 100
LSA_WEIGHT = 0.3
ENSEMBLE_K_SPREAD = (0.7, 1.4)  # each run's K is drawn from [0.7 K, 1.4 K]
DEFAULT_THRESHOLD = 0.9  # cosine similarity above which a generated question is a near-duplicate
MAX_QUESTION_CHARS = 300


class CorpusError(ValueError):
    """Bad options or data for a corpus command (shown to the user as is)."""


# --- embedding and clustering ------------------------------------------------------------------
def embed_questions(texts: Sequence[str], affirming: Sequence[str] | None = None, *,
                    progress: Callable[[int], None] | None = None, batch_size: int = 256) -> np.ndarray:
    """Unit vectors: the normalised mean of the MiniLM embeddings of the question and its affirming statement."""
    import torch

    from analysis.reward.model import embed_texts

    texts = list(texts)
    affirming = list(affirming) if affirming is not None else [""] * len(texts)
    if len(affirming) != len(texts):
        raise CorpusError("texts and affirming statements differ in length")
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            aff = affirming[start:start + batch_size]
            q_emb = embed_texts(chunk)
            has = [i for i, a in enumerate(aff) if a and a.strip()]
            if has:
                a_emb = embed_texts([aff[i] for i in has])
                q_emb[has] = q_emb[has] + a_emb
            out.append(q_emb)
            if progress:
                progress(len(chunk))
    if not out:
        return np.zeros((0, 384), dtype=np.float32)
    emb = np.concatenate(out)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def cluster_features(emb: np.ndarray, texts: Sequence[str], *, seed: int = 0) -> np.ndarray:
    """PCA-reduced embeddings concatenated with weighted LSA features of ``texts`` (steps 1-2 above)."""
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    n = len(emb)
    dims = min(PCA_DIMS, n - 1, emb.shape[1])
    parts = [unit(PCA(dims, random_state=seed).fit_transform(emb)) if dims >= 2 else unit(emb)]
    try:
        tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True, ngram_range=(1, 2),
                                min_df=2 if n >= 100 else 1).fit_transform(list(texts))
    except ValueError:  # no usable words at all
        tfidf = None
    if tfidf is not None and min(tfidf.shape) > 2:
        lsa = TruncatedSVD(min(LSA_DIMS, min(tfidf.shape) - 1), random_state=seed).fit_transform(tfidf)
        parts.append(LSA_WEIGHT * unit(lsa))
    return unit(np.hstack(parts))


def cluster_embeddings(emb: np.ndarray, k: int = DEFAULT_K, *, texts: Sequence[str] | None = None, seed: int = 0,
                       runs: int = ENSEMBLE_RUNS, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Subtopic labels 0..k-1 by consensus clustering (see the module docstring); labels ordered by size.
    ``texts`` (question and affirming statement) add the lexical features; without them, embeddings only."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    n = len(emb)
    if k < 2:
        raise CorpusError(f"--k must be at least 2 (got {k})")
    if n < k:
        raise CorpusError(f"cannot make {k} clusters of {n} questions; lower --k")
    if runs < 1:
        raise CorpusError(f"--runs must be at least 1 (got {runs})")
    features = cluster_features(emb, texts, seed=seed) if texts is not None else emb
    rng = np.random.default_rng(seed)
    coassoc = np.zeros((n, n), dtype=np.float32)
    lo, hi = ENSEMBLE_K_SPREAD
    for _run in range(runs):
        k_run = int(min(n, max(2, rng.integers(int(lo * k), int(hi * k) + 1))))
        labels = KMeans(k_run, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit_predict(features)
        coassoc += labels[:, None] == labels[None, :]
        if progress:
            progress(1)
    coassoc /= runs
    labels = AgglomerativeClustering(k, metric="precomputed", linkage="average").fit_predict(1.0 - coassoc)
    return relabel_by_size(labels)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0.. by decreasing size (ties by first member), so labels do not depend on the method."""
    labels = np.asarray(labels)
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], first[i]))
    mapping = {ids[i]: new for new, i in enumerate(order)}
    return np.array([mapping[x] for x in labels], dtype=int)


def agreement(labels: Sequence[int], reference: Sequence[int]) -> dict:
    """NMI and ARI of ``labels`` against ``reference`` (only for reporting)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"nmi": float(normalized_mutual_info_score(reference, labels)),
            "ari": float(adjusted_rand_score(reference, labels)), "n": len(reference)}


# --- splits ------------------------------------------------------------------------------------
def subtopic_split(subtopics: Sequence[int], *, test_share: float, seed: int) -> dict[int, str]:
    """Held-out subtopics: whole subtopics, in a seeded random order, go to test until they hold at least
    ``test_share`` of the questions (never all of them). Returns subtopic -> "train" | "test"."""
    if not 0 < test_share < 1:
        raise CorpusError(f"--test-share must be between 0 and 1 (got {test_share})")
    sizes: dict[int, int] = {}
    for s in subtopics:
        sizes[s] = sizes.get(s, 0) + 1
    if len(sizes) < 2:
        raise CorpusError("need at least two subtopics to hold one out; run cluster_questions first")
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    total, target, held = sum(sizes.values()), test_share * sum(sizes.values()), 0
    result = {}
    for s in order:
        if held < target and held + sizes[s] < total:
            result[s] = "test"
            held += sizes[s]
        else:
            result[s] = "train"
    return result


# --- generated questions -----------------------------------------------------------------------
_BULLET = re.compile(r"^\s*(?:[-*•]+|\(?\d+[.)]|Q\d*[:.)])\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class ParsedOutput:
    questions: list[str] = field(default_factory=list)
    not_questions: int = 0


def parse_generated(text: str) -> ParsedOutput:
    """The questions in one model output: one per line (bullets and numbering removed), a line split into
    sentences; a sentence that is no question (no final ``?``, under three words, too long) is counted."""
    out = ParsedOutput()
    for line in (text or "").splitlines():
        line = _BULLET.sub("", line).strip().strip('"“”\'').strip()
        if not line:
            continue
        for sentence in _SENTENCE_END.split(line):
            sentence = " ".join(sentence.split()).strip('"“”\'')
            if not sentence:
                continue
            if (sentence.endswith("?") and len(sentence.split()) >= 3 and len(sentence) <= MAX_QUESTION_CHARS
                    and sentence[0].isalpha()):
                out.questions.append(sentence[0].upper() + sentence[1:])
            else:
                out.not_questions += 1
    return out


def normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@dataclass
class ExpansionReport:
    prompts: int = 0
    created: int = 0
    empty: int = 0
    not_questions: int = 0
    duplicates: int = 0  # same text (up to case and punctuation) as a stored or an earlier generated question
    near_duplicates: int = 0  # embedding similarity above the threshold
    failed_prompts: int = 0  # the backend raised for this prompt
    question_ids: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.prompts} prompts: created {self.created}; dropped {self.empty} empty, "
                f"{self.not_questions} not questions, {self.duplicates} duplicates, "
                f"{self.near_duplicates} near-duplicates" + (f"; {self.failed_prompts} prompts failed"
                                                               if self.failed_prompts else ""))


def questions_expand(*, study, per_question: int, seed: int = 0, threshold: float = DEFAULT_THRESHOLD,
                     examples: int = 2, limit: int | None = None, backend=None, backend_name: str | None = None,
                     arm: str | None = None, progress: Callable[[int], None] | None = None) -> ExpansionReport:
    """New questions from the study's questions through an arm's generation backend (``arm``: its name; default
    the study's only arm, ``deliberation.selectors.study_arm``) and the latest ``question_generation`` template;
    kept ones are stored, attached to the study, with provenance. ``backend_name`` overrides the arm's backend
    (the arm's server and generator options apply only to its own backend).

    One prompt per seed question: the seed plus ``examples`` other study questions (drawn with ``seed``) as
    style examples, asking for ``per_question`` questions. Empty outputs, non-questions, duplicates and
    near-duplicates (cosine similarity > ``threshold`` to a study question or an earlier kept one) are
    dropped and counted.
    """
    from django.db import transaction

    from deliberation.models import Question
    from deliberation.selectors import ArmChoiceError, study_arm
    from deliberation.services import derive_seed
    from generation.backends import GenerationError, GenerationRequest, get_backend
    from generation.models import PromptTemplate
    from generation.prompts import render_question_generation
    from generation.services import generation_params

    if per_question < 1:
        raise CorpusError(f"--per-question must be at least 1 (got {per_question})")
    if not 0 < threshold <= 1:
        raise CorpusError(f"--threshold must be in (0, 1] (got {threshold})")
    if examples < 0:
        raise CorpusError(f"--examples must not be negative (got {examples})")
    seeds = list(study.questions.order_by("id"))
    if not seeds:
        raise CorpusError(f"study {study.slug!r} has no questions to expand; attach some with import_questions "
                          "--study")
    if limit is not None:
        if limit < 1:
            raise CorpusError(f"--limit must be at least 1 (got {limit})")
        seeds = seeds[:limit]
    pool = list(study.questions.order_by("id"))
    try:
        settings_from = study_arm(study, arm)
    except ArmChoiceError as exc:
        raise CorpusError(str(exc)) from None
    if backend is None:
        name = backend_name or settings_from.generation_backend
        try:
            options = settings_from.backend_options() if name == settings_from.generation_backend else {}
            backend = get_backend(name, **options)
        except (ValueError, TypeError, GenerationError) as exc:
            raise CorpusError(f"cannot start the {name!r} generation backend: {exc}") from None
    template = PromptTemplate.latest("question_generation")
    params = generation_params(settings_from)
    params["max_new_tokens"] = max(params["max_new_tokens"], 48 * per_question)

    known = {normalised(q) for q in Question.objects.values_list("text", flat=True)}
    kept_emb = embed_questions([q.text for q in pool])
    report = ExpansionReport()
    for seed_question in seeds:
        rng = random.Random(derive_seed(seed, "expand", seed_question.pk))
        others = [q for q in pool if q.pk != seed_question.pk]
        prompt_questions = [seed_question, *rng.sample(others, min(examples, len(others)))]
        messages = render_question_generation(template.spec(), [q.text for q in prompt_questions], per_question)
        request_seed = derive_seed(seed, "expand", seed_question.pk, "request")
        report.prompts += 1
        try:
            [result] = backend.generate([GenerationRequest(messages=messages, seed=request_seed, **params)])
        except GenerationError:
            report.failed_prompts += 1
            if progress:
                progress(1)
            continue
        parsed = parse_generated(result.text)
        if not parsed.questions and not parsed.not_questions:
            report.empty += 1
        report.not_questions += parsed.not_questions
        fresh = []
        for text in parsed.questions:
            key = normalised(text)
            if key in known:
                report.duplicates += 1
                continue
            known.add(key)
            fresh.append(text)
        if fresh:
            emb = embed_questions(fresh)
            provenance = {"seed_question_ids": [q.pk for q in prompt_questions],
                          "template": {"kind": template.kind, "version": template.version, "id": template.pk},
                          "backend": getattr(backend, "name", ""), "arm": settings_from.name,
                          "model": result.model_id,
                          "seed": result.seed, "base_seed": seed, "params": params}
            with transaction.atomic():
                for text, vec in zip(fresh, emb, strict=True):
                    if len(kept_emb) and float((kept_emb @ vec).max()) > threshold:
                        report.near_duplicates += 1
                        continue
                    question = Question.objects.create(text=text, source=f"generated:{study.slug}"[:200],
                                                       provenance=provenance)
                    study.questions.add(question)
                    kept_emb = np.vstack([kept_emb, vec[None, :]]) if len(kept_emb) else vec[None, :]
                    report.created += 1
                    report.question_ids.append(question.pk)
        if progress:
            progress(1)
    return report
