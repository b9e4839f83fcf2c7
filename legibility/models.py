"""Legibility studies (prover–verifier games): problems, solutions, verifiers and time-limited judges.

Models hold fields, constraints and small derived properties; workflows live in
``legibility/services.py`` (judging), ``legibility/importing.py`` and ``legibility/rounds.py``.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import translation

from participants.models import ConsentVersionBase, Recruited, new_token  # noqa: F401  # new_token: migration 0001


class LegibilityStudy(models.Model):
    """One legibility study: its problems, provers' rounds, verifiers and judges."""

    class Backend(models.TextChoices):
        EMBEDDED = "embedded", "Embedded SmolLM2-135M on the worker's CPU"
        OPENAI = "openai", "OpenAI-compatible server (vLLM, llama.cpp, TGI, ...)"
        EXTRACTIVE = "extractive", "Extractive baseline (no model; for pilots and tests)"

    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    language = models.CharField(
        max_length=16, choices=settings.LANGUAGES, default="en",
        help_text="The language judges see: every page, message and button the toolkit writes (your own texts, "
                  "such as the consent text, are shown as you wrote them).")
    consent_text = models.TextField(
        default="This is a research study on how people check written math solutions. You will see short "
        "problems with a proposed solution and decide, within a time limit, whether the solution is correct. "
        "Your answers are stored anonymously with your recruitment id. You may leave at any time."
    )
    instructions = models.TextField(
        default="Judge the whole solution, not only the final answer: it is correct only if its reasoning and "
        "its final answer are right. Each solution has a strict time limit; if time is running out, guess.")
    is_active = models.BooleanField(default=True, help_text="Inactive studies refuse new judges.")

    seconds_per_item = models.PositiveIntegerField(default=45, validators=[MinValueValidator(1)],
                                                   help_text="Strict time limit per solution, enforced on the "
                                                             "server.")
    items_per_session = models.PositiveSmallIntegerField(default=20, validators=[MinValueValidator(1)])
    gold_share = models.FloatField(default=0.2, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
                                   help_text="Share of each judge's items that are gold items (answer checked "
                                             "twice) for quality control.")
    chance_alpha = models.FloatField(
        default=0.05, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A judge is flagged as at chance level when a one-sided binomial test of their accuracy "
                  "(overall or on gold items) against 0.5 has p above this threshold.")
    seed = models.BigIntegerField(default=0, help_text="Seeds the problem halves and every judge's queue.")

    generation_backend = models.CharField(max_length=32, choices=Backend.choices, default="embedded")
    generation_base_url = models.URLField(blank=True,
                                          help_text="OpenAI-compatible server, e.g. http://gpu-host:8000/v1")
    generation_model = models.CharField(max_length=200, blank=True,
                                        help_text="Model name the server expects (e.g. the one given to vllm serve).")
    generation_api_key_env = models.CharField(max_length=100, blank=True,
                                              help_text="NAME of the environment variable holding the API key "
                                                        "(the key itself is never stored).")
    generation_concurrency = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1)])
    generation_timeout_seconds = models.PositiveIntegerField(default=120)
    generation_params = models.JSONField(default=dict, blank=True,
                                         help_text='e.g. {"temperature": 0.7, "max_new_tokens": 256}')

    completion_code_completed = models.CharField(max_length=64, blank=True)
    completion_code_excluded = models.CharField(
        max_length=64, blank=True,
        help_text="For judges at chance level (see chance alpha). Empty: the completed code.")
    completion_code_timed_out = models.CharField(
        max_length=64, blank=True, help_text="For judges who let more than the timeout share of their items time "
                                             "out. Empty: the completed code.")
    max_timeout_share = models.FloatField(
        default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A judge whose share of timed-out items exceeds this finishes as 'timed out'.")
    prolific_redirect = models.BooleanField(default=False,
                                            help_text="Send judges to Prolific's completion URL with their code.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "legibility study"
        verbose_name_plural = "legibility studies"

    def __str__(self) -> str:
        return self.title

    def completion_code(self, outcome: str) -> str:
        """The code a judge finishing with ``outcome`` (``judging.judge_outcome``) gets; the completed code where
        the outcome's own is empty."""
        own = {"excluded": self.completion_code_excluded, "timed_out": self.completion_code_timed_out}.get(outcome)
        return own or self.completion_code_completed

    def clean(self) -> None:
        from deliberation.endpoints import endpoint_problems

        problems = endpoint_problems(base_url=self.generation_base_url, api_key_env=self.generation_api_key_env)
        if problems:
            raise ValidationError(problems)

    def consent_disclosure(self) -> str:
        """The paragraph the toolkit adds below the experimenter's consent text, in the study's language."""
        from participants.consent import judging_disclosure

        with translation.override(self.language):
            return judging_disclosure()

    def backend_options(self) -> dict:
        """Keyword options for ``generation.backends.get_backend`` (the HTTP backend's connection).

        Raises ``GenerationError`` when the server or key variable is not allowed (``deliberation.endpoints``)."""
        if self.generation_backend != "openai":
            return {}
        from deliberation.endpoints import endpoint_check

        endpoint_check(base_url=self.generation_base_url, api_key_env=self.generation_api_key_env)
        return {"base_url": self.generation_base_url, "model": self.generation_model,
                "api_key_env": self.generation_api_key_env, "concurrency": self.generation_concurrency,
                "timeout": float(self.generation_timeout_seconds)}


class Problem(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train"
        TEST = "test"

    class Half(models.TextChoices):
        PROVER = "prover"
        VERIFIER = "verifier"
        HELDOUT = "heldout"

    study = models.ForeignKey(LegibilityStudy, on_delete=models.CASCADE, related_name="problems")
    split = models.CharField(max_length=8, choices=Split.choices, db_index=True)
    index = models.PositiveIntegerField(help_text="Line number (0-based) in the split's jsonl file.")
    text = models.TextField()
    reference_solution = models.TextField(blank=True, help_text="The dataset's worked solution.")
    reference_answer = models.CharField(max_length=64, help_text="The text after '#### '.")
    numeric_answer = models.FloatField(null=True, blank=True)
    half = models.CharField(
        max_length=8, choices=Half.choices, db_index=True,
        help_text="Training problems: two equal seeded halves (prover / verifier). Test problems that have "
                  "shipped solutions: equal seeded halves verifier / heldout (the base prover's solutions exist "
                  "only there); other test problems: heldout. The verifier is evaluated on heldout solutions.")

    class Meta:
        ordering = ["split", "index"]
        constraints = [models.UniqueConstraint(fields=["study", "split", "index"], name="one_problem_per_line")]

    def __str__(self) -> str:
        return f"{self.split}#{self.index}: {self.text[:60]}"


class Solution(models.Model):
    class Source(models.TextChoices):
        SHIPPED = "shipped", "Shipped (base prover, round 0)"
        PROVER = "prover", "Prover (a round's helpful or sneaky prover)"

    class Role(models.TextChoices):
        NONE = "", "none (base prover)"
        HELPFUL = "helpful"
        SNEAKY = "sneaky"

    problem = models.ForeignKey(Problem, on_delete=models.CASCADE, related_name="solutions")
    text = models.TextField()
    source = models.CharField(max_length=8, choices=Source.choices, db_index=True)
    role = models.CharField(max_length=8, choices=Role.choices, blank=True, db_index=True)
    round = models.PositiveSmallIntegerField(default=0, db_index=True)
    correct = models.BooleanField(db_index=True, help_text="Final answer matches the reference (automatic grader).")
    final_answer = models.CharField(max_length=64, blank=True, help_text="Answer the grader extracted.")
    dataset_label = models.BooleanField(null=True, blank=True, help_text="The data set's own is_correct label.")
    is_gold = models.BooleanField(default=False, db_index=True,
                                  help_text="Correctness checked twice (grader and data set agree): used as gold "
                                            "items for judges' quality control.")
    external_key = models.CharField(max_length=64, blank=True,
                                    help_text="Which shipped model wrote it (e.g. 175b_verification).")
    provenance = models.JSONField(default=dict, blank=True, help_text="Backend, model, seed, prompt, latency.")
    verifier_scores = models.JSONField(default=dict, blank=True, help_text="{verifier id: score}")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["problem", "source", "role", "round", "external_key"],
                                    name="one_solution_per_slot"),
        ]
        indexes = [models.Index(fields=["round", "role", "correct"])]

    def __str__(self) -> str:
        who = self.role or self.external_key or self.source
        return f"{who} r{self.round} on {self.problem.split}#{self.problem.index} ({'ok' if self.correct else 'wrong'})"


class Verifier(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        TRAINING = "training"
        READY = "ready"
        FAILED = "failed"

    study = models.ForeignKey(LegibilityStudy, on_delete=models.CASCADE, related_name="verifiers")
    round = models.PositiveSmallIntegerField()
    path = models.CharField(max_length=500, blank=True, help_text="Directory written by legibility.verifier.save.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="Share of training done, 0 to 1.")
    progress_message = models.CharField(max_length=300, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="VerifierConfig it was trained with.")
    metrics = models.JSONField(default=dict, blank=True, help_text="Held-out evaluation (AUC, ...) and training.")
    n_train = models.PositiveIntegerField(default=0)
    n_heldout = models.PositiveIntegerField(default=0)
    train_problem_hashes = models.JSONField(
        default=list, blank=True,
        help_text="legibility.overlap.text_hash of every problem it trained on; evaluations drop those problems.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"verifier r{self.round} ({self.status})"


class JudgeSession(Recruited):
    """One judge in one study: recruitment ids (Prolific), consent, their queue of items, completion.

    ``participants.Participant`` belongs to a deliberation study, so judges have their own row with
    the same recruitment-id handling (``participants.services`` cleans the link's parameters).
    """

    class Status(models.TextChoices):
        JOINED = "joined"  # not consented: rows made in code, or from before the consent POST created the row
        JUDGING = "judging"
        COMPLETED = "completed"

    study = models.ForeignKey(LegibilityStudy, on_delete=models.PROTECT, related_name="sessions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.JOINED, db_index=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    class Outcome(models.TextChoices):
        COMPLETED = "completed"
        EXCLUDED = "excluded", "Excluded (at chance level)"
        TIMED_OUT = "timed_out", "Timed out"

    completion_code = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True, db_index=True,
                               help_text="How the judge finished; decides the completion code.")
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "recruitment_id"], condition=Q(recruitment_id__isnull=False),
                                    name="one_judge_per_recruitment_id"),
        ]
        permissions = [("relink_judgesession", "Can re-link a judge to a new device")]

    def __str__(self) -> str:
        return self.recruitment_id or f"judge {self.pk}"


class JudgeConsentVersion(ConsentVersionBase):
    """A legibility study's consent wording (see ``participants.models.ConsentVersionBase``)."""

    study = models.ForeignKey(LegibilityStudy, on_delete=models.PROTECT, related_name="consent_versions")

    class Meta(ConsentVersionBase.Meta):
        constraints = [
            models.UniqueConstraint(fields=["study", "version"], name="one_judge_consent_version_number_per_study"),
            models.UniqueConstraint(fields=["study", "sha256"], name="one_judge_consent_version_per_text"),
        ]


class JudgeItem(models.Model):
    session = models.ForeignKey(JudgeSession, on_delete=models.CASCADE, related_name="items")
    solution = models.ForeignKey(Solution, on_delete=models.PROTECT, related_name="judgements")
    position = models.PositiveSmallIntegerField()
    is_gold = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True, help_text="First shown (server clock).")
    deadline = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answer = models.BooleanField(null=True, blank=True, help_text="True = judged correct; empty = no answer.")
    timed_out = models.BooleanField(default=False)
    response_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["session", "position"]
        constraints = [
            models.UniqueConstraint(fields=["session", "position"], name="one_item_per_position"),
            models.UniqueConstraint(fields=["session", "solution"], name="one_judgement_per_solution"),
        ]

    def __str__(self) -> str:
        return f"item {self.position} of {self.session}"

    @property
    def is_done(self) -> bool:
        return self.answer is not None or self.timed_out

    @property
    def is_right(self) -> bool | None:
        """Whether the judge's answer matches the solution's correctness (None if unanswered)."""
        return None if self.answer is None else self.answer == self.solution.correct
