"""Studies, questions, groups and everything members write. PostgreSQL is the truth.

Models hold fields, constraints and small derived properties; workflows live in
``deliberation/services.py``. Unique constraints make every resubmission idempotent.
"""
from __future__ import annotations

import dataclasses
from decimal import Decimal

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import translation

from core.flow import FlowConfig, Phase


class Question(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train"
        IID_TEST = "iid_test"
        OOD_TEST = "ood_test"
        NONE = ""

    text = models.TextField(unique=True)
    external_id = models.CharField(max_length=64, blank=True, db_index=True, help_text="Id in the source corpus.")
    affirming_statement = models.TextField(blank=True)
    negating_statement = models.TextField(blank=True)
    topic = models.IntegerField(null=True, blank=True, db_index=True)
    split = models.CharField(max_length=16, choices=Split.choices, blank=True, db_index=True)
    source = models.CharField(max_length=200, blank=True, help_text="File or corpus it was imported from.")
    # Computed fields: written by cluster_questions / split_questions / expand_questions, never by import_questions.
    subtopic = models.IntegerField(null=True, blank=True, db_index=True,
                                   help_text="Cluster id from cluster_questions (embeddings, no labels).")
    subtopic_split = models.CharField(max_length=8, choices=[("train", "train"), ("test", "test")], blank=True,
                                      db_index=True, help_text="Subtopic-held-out split from split_questions.")
    provenance = models.JSONField(default=dict, blank=True,
                                  help_text="For generated questions: seed question ids, template, model, seed.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.text[:80]


NON_NEGATIVE_AMOUNT = MinValueValidator(Decimal("0"), "A bonus amount cannot be negative.")

# The settings an arm holds (StudyArm); the study's own fields of these names are the template for the first arm
# (``StudyArm.from_study``, migration 0013) and are not read while a group runs.
ARM_SETTINGS = ("generation_backend", "generation_base_url", "generation_model", "generation_params",
                "generator_model", "consensus_template", "revision_template", "best_of_n", "reward_model",
                "critique_round", "opinions_as_candidates", "leave_one_out_share")


def _attname(field: str) -> str:
    return f"{field}_id" if field in ("generator_model", "consensus_template", "revision_template",
                                      "reward_model") else field


def generation_settings_problems(settings, study) -> dict[str, str]:
    """What is wrong with a study's or an arm's generation settings, by field (empty when nothing is)."""
    from .endpoints import endpoint_problems

    problems: dict[str, str] = {}
    if settings.best_of_n:
        if settings.best_of_n < study.num_candidates:
            problems["best_of_n"] = (f"Generate at least as many candidates as are shown ({study.num_candidates}), "
                                     "or 0 for off.")
        elif settings.reward_model_id is None and study.reward_model_id is None:
            problems["reward_model"] = "Best-of-N needs a trained reward model."
    if settings.generator_model_id:
        if settings.generator_model.status != "done" or not settings.generator_model.checkpoint_path:
            problems["generator_model"] = "Only a finished (done) generator version can be served."
        elif settings.generation_backend != Study.Backend.EMBEDDED:
            problems["generator_model"] = "A fine-tuned generator is served by the embedded backend."
    # The key variable is the study's (one per study); an arm names only its server.
    problems.update(endpoint_problems(base_url=settings.generation_base_url,
                                      api_key_env=study.generation_api_key_env if settings is study else ""))
    return problems


class Study(models.Model):
    class Aggregation(models.TextChoices):
        SCHULZE = "schulze", "Schulze (TBRC tie-breaking)"
        BORDA = "borda", "Borda count (TBRC tie-breaking)"
        COPELAND = "copeland", "Copeland (TBRC tie-breaking)"

    class Welfare(models.TextChoices):
        UTILITARIAN = "utilitarian", "Utilitarian (mean predicted agreement)"
        RAWLSIAN = "rawlsian", "Rawlsian (the least satisfied member)"
        ISOELASTIC = "isoelastic", "Isoelastic with parameter α"

    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    language = models.CharField(
        max_length=16, choices=django_settings.LANGUAGES, default="en",
        help_text="The language participants see: every page, message and button the toolkit writes (your own texts, "
                  "such as the consent text, are shown as you wrote them).")
    consent_text = models.TextField(
        default="This is a research study on group deliberation. Your answers are stored anonymously "
        "with your recruitment id. You may leave at any time."
    )
    is_active = models.BooleanField(default=True, help_text="Inactive studies refuse new participants.")
    questions = models.ManyToManyField(Question, related_name="studies", blank=True)

    min_group_size = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    max_group_size = models.PositiveSmallIntegerField(default=5, validators=[MinValueValidator(1)])
    lobby_timeout_seconds = models.PositiveIntegerField(default=300)
    opinion_seconds = models.PositiveIntegerField(default=300)
    rating_seconds = models.PositiveIntegerField(default=300)
    critique_seconds = models.PositiveIntegerField(default=240)
    final_rating_seconds = models.PositiveIntegerField(default=240)
    critique_round = models.BooleanField(default=True)
    num_candidates = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1), MaxValueValidator(16)])
    aggregation_method = models.CharField(max_length=32, choices=Aggregation.choices, default=Aggregation.SCHULZE,
                                          help_text="How the members' rankings choose the winner.")
    best_of_n = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(64)],
        help_text="Best-of-N: generate this many candidates, score each for each member with the reward model, "
                  "and show the 'number of candidates' with the highest welfare. 0 = off.")
    reward_model = models.ForeignKey("analysis.RewardModel", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", help_text="Trained reward model used for best-of-N "
                                     "(the promoted version when retraining is on).")
    reward_retrain_every = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Retrain the reward model on every human rating so far each time this many more groups have "
                  "finished; the new version replaces the one in use only if it ranks held-out groups' candidates "
                  "better. Empty or 0 = off.")
    reward_retrain_config = models.JSONField(
        default=dict, blank=True,
        help_text="Training options for retraining (RewardConfig fields, e.g. {\"epochs\": 2}, and 'holdout': "
                  "group, question or topic). Empty: the settings of the version in use, else the defaults.")
    welfare_method = models.CharField(max_length=16, choices=Welfare.choices, default=Welfare.UTILITARIAN)
    welfare_alpha = models.FloatField(default=1.0, help_text="α for the isoelastic welfare (0 = utilitarian, "
                                                              "large = Rawlsian).")
    max_text_chars = models.PositiveIntegerField(default=1000, help_text="Longest opinion or critique accepted.")

    class Backend(models.TextChoices):
        EMBEDDED = "embedded", "Embedded SmolLM2-135M on the worker's CPU"
        OPENAI = "openai", "OpenAI-compatible server (vLLM, llama.cpp, TGI, ...)"
        EXTRACTIVE = "extractive", "Extractive baseline (no model; for pilots and load tests)"
        RECORDED = "recorded", "Recorded: replays statements a model wrote earlier (load tests)"

    generation_backend = models.CharField(max_length=32, choices=Backend.choices, default=Backend.EMBEDDED)
    questions_from_train_split = models.BooleanField(
        default=False,
        help_text="Live groups draw only from the study's questions in the subtopic train split (split_questions); "
                  "off: round-robin over all the study's questions.")
    opinions_as_candidates = models.BooleanField(
        default=False,
        help_text="Round 1 also shows each member's opinion (anonymised, in the same list) as a statement to rate "
                  "and rank. Opinions cannot win: they are the comparator of the preference rate (is the chosen "
                  "statement ranked above the members' own opinions?).")
    leave_one_out_share = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of groups in the leave-one-out condition: one member's opinion is silently left out of "
                  "the generation prompt (recorded on the group, never shown).")
    bot_takeover = models.BooleanField(
        default=False, help_text="When a member drops out, a simulated participant takes over so the group finishes.")
    generation_base_url = models.URLField(blank=True, help_text="OpenAI-compatible server, e.g. http://gpu-host:8000/v1")
    generation_model = models.CharField(max_length=200, blank=True,
                                        help_text="Model name the server expects (e.g. the one given to vllm serve).")
    generation_api_key_env = models.CharField(max_length=100, blank=True,
                                              help_text="NAME of the environment variable holding the API key "
                                                        "(the key itself is never stored).")
    generation_concurrency = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1)],
                                                              help_text="Requests in flight to the server at once.")
    generation_timeout_seconds = models.PositiveIntegerField(default=120)
    consensus_template = models.ForeignKey("generation.PromptTemplate", null=True, blank=True,
                                           on_delete=models.PROTECT, related_name="+",
                                           limit_choices_to={"kind": "consensus"},
                                           help_text="Empty: the latest consensus template.")
    revision_template = models.ForeignKey("generation.PromptTemplate", null=True, blank=True,
                                          on_delete=models.PROTECT, related_name="+",
                                          limit_choices_to={"kind": "revision"},
                                          help_text="Empty: the latest revision template.")
    generation_params = models.JSONField(default=dict, blank=True,
                                         help_text='e.g. {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 160}')
    generation_seed = models.BigIntegerField(default=0, help_text="Base seed; each candidate derives its own.")
    generator_model = models.ForeignKey(
        "analysis.GeneratorModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Fine-tuned generator version the embedded backend serves (manage.py finetune_generator). "
                  "Empty: the base SmolLM2-135M-Instruct.")

    completion_code_completed = models.CharField(max_length=64, blank=True)
    completion_code_lobby_timeout = models.CharField(max_length=64, blank=True)
    completion_code_dropped = models.CharField(max_length=64, blank=True)
    completion_code_screened_out = models.CharField(
        max_length=64, blank=True, help_text="For participants who fail the screening questions.")

    class WithdrawalPolicy(models.TextChoices):
        ANONYMISE = "anonymise", "Keep their texts, remove their recruitment ids, URL parameters and browser"
        BLANK = "blank", "Blank their texts too (opinions, critiques, drafts); ratings are kept"

    withdrawal_policy = models.CharField(
        max_length=16, choices=WithdrawalPolicy.choices, default=WithdrawalPolicy.ANONYMISE,
        help_text="What happens to a participant's data when they withdraw (the row and event log are kept).")
    prolific_redirect = models.BooleanField(default=False,
                                            help_text="Send participants to Prolific's completion URL with their code.")

    # Quotas and caps (docs/experimenter.md#quotas): reaching one closes the study (is_active off, closed_reason).
    max_participants = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1, "A cap must be at least 1 (empty = no cap).")],
        help_text="Close the study once this many people have consented. Empty = no cap.")
    max_groups = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1, "A cap must be at least 1 (empty = no cap).")],
        help_text="Close the study once this many groups have formed. Empty = no cap.")
    closed_reason = models.CharField(max_length=200, blank=True,
                                     help_text="Why the study closed itself (a cap reached); shown on the join page. "
                                               "Cleared when you tick 'is active' again.")
    # Pause (docs/experimenter.md#pause): set and cleared by the monitor's Pause / Resume buttons.
    paused_at = models.DateTimeField(null=True, blank=True,
                                     help_text="Paused since: new joins are refused and running groups' deadlines "
                                               "are frozen until the monitor resumes the study.")
    # Bonuses (docs/experimenter.md#bonuses; core.bonuses computes them, manage.py bonus_csv writes them).
    bonus_per_completion = models.DecimalField(
        max_digits=8, decimal_places=2, default=Decimal("0"), validators=[NON_NEGATIVE_AMOUNT],
        help_text="Bonus for finishing the study (outcome completed), in the Prolific currency.")
    bonus_per_lobby_minute = models.DecimalField(
        max_digits=8, decimal_places=2, default=Decimal("0"), validators=[NON_NEGATIVE_AMOUNT],
        help_text="Bonus per minute waited in the lobby (from entering it to the group forming or the lobby timeout).")
    bonus_per_phase = models.DecimalField(
        max_digits=8, decimal_places=2, default=Decimal("0"), validators=[NON_NEGATIVE_AMOUNT],
        help_text="Bonus per phase completed (opinion, rating, critique, final rating answered in time, not by a bot).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=Q(min_group_size__lte=models.F("max_group_size")),
                                   name="study_min_le_max_group_size"),
        ]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        if self.min_group_size > self.max_group_size:
            raise ValidationError({"min_group_size": "Must not exceed the maximum group size."})
        if self.max_participants and self.max_participants < self.min_group_size:
            raise ValidationError({"max_participants": f"A cap of {self.max_participants} participant(s) cannot fill "
                                                       f"one group of at least {self.min_group_size}."})
        problems = generation_settings_problems(self, self)
        if self.pk and self.arms.exists():
            # The arms hold the generation settings and are checked on their own forms; the study's fields of those
            # names are not used (nor on the admin form). Only what the study itself still serves is checked here.
            problems = {k: v for k, v in problems.items() if k == "generation_api_key_env"
                        or (k == "generator_model" and "finished" in v)}
        if problems:
            raise ValidationError(problems)

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None

    @property
    def flow_config(self) -> FlowConfig:
        return FlowConfig(
            opinion_seconds=self.opinion_seconds,
            rating_seconds=self.rating_seconds,
            critique_seconds=self.critique_seconds,
            final_rating_seconds=self.final_rating_seconds,
            critique_round=self.critique_round,
        )

    def backend_options(self) -> dict:
        """Keyword options for ``generation.backends.get_backend``: the fine-tuned generator version the embedded
        backend serves, or the HTTP backend's connection.

        Raises ``GenerationError`` when the server or key variable is not allowed (``deliberation.endpoints``)."""
        if self.generation_backend == self.Backend.EMBEDDED and self.generator_model_id:
            return {"checkpoint": self.generator_model.checkpoint_path, "version": self.generator_model_id}
        if self.generation_backend != self.Backend.OPENAI:
            return {}
        from .endpoints import endpoint_check

        endpoint_check(base_url=self.generation_base_url, api_key_env=self.generation_api_key_env)
        return {"base_url": self.generation_base_url, "model": self.generation_model,
                "api_key_env": self.generation_api_key_env, "concurrency": self.generation_concurrency,
                "timeout": float(self.generation_timeout_seconds)}

    def text_use(self):
        """What this study's settings may do with a participant's text (``participants.consent``)."""
        from participants.consent import DeliberationUse

        # Every arm's use counts: a participant consents before they know which arm their group will be in.
        arms = list(self.arms.all()) if self.pk else []
        settings = arms or [self]
        # The most far-reaching backend speaks for all: an outside server, else a model, else copied sentences.
        reach = [self.Backend.OPENAI, self.Backend.EMBEDDED, self.Backend.RECORDED, self.Backend.EXTRACTIVE]
        http = min(settings, key=lambda a: reach.index(a.generation_backend)
                   if a.generation_backend in reach else len(reach))
        return DeliberationUse(
            opinions_as_candidates=any(a.opinions_as_candidates for a in settings), backend=http.generation_backend,
            generation_base_url=http.generation_base_url,
            leave_one_out=any(a.leave_one_out_share > 0 for a in settings),
            bot_takeover=self.bot_takeover, reward_model=any(bool(a.best_of_n) for a in settings))

    def consent_disclosure(self) -> str:
        """The paragraph the toolkit adds below the experimenter's consent text, in the study's language whoever
        asks (a page, the admin, a command), so one wording has one version."""
        from participants.consent import deliberation_disclosure

        with translation.override(self.language):
            return deliberation_disclosure(self.text_use())

    def completion_code(self, outcome: str) -> str:
        return {
            "completed": self.completion_code_completed,
            "lobby_timeout": self.completion_code_lobby_timeout,
            "dropped": self.completion_code_dropped,
            "screened_out": self.completion_code_screened_out,
        }.get(outcome, "")


class StudyArm(models.Model):
    """One arm of a study: the generation settings its groups run with. Groups are assigned to arms at formation
    by seeded permuted blocks (``services.assign_arm``), each arm ``weight`` times per block. Study-wide settings
    (group sizes, timing, candidates shown, winner rule, seeds, the API key variable) stay on the study."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="arms")
    name = models.CharField(max_length=64, help_text="Shown on the monitor, in exports and in the report.")
    weight = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1, "An arm's weight must be a whole number of at least 1."),
                               MaxValueValidator(100)],
        help_text="How many times the arm appears in each block of group assignments (1 = equal share).")

    generation_backend = models.CharField(max_length=32, choices=Study.Backend.choices,
                                          default=Study.Backend.EMBEDDED)
    generation_base_url = models.URLField(blank=True, help_text="OpenAI-compatible server, e.g. http://gpu-host:8000/v1")
    generation_model = models.CharField(max_length=200, blank=True,
                                        help_text="Model name the server expects (OpenAI-compatible backend).")
    generation_params = models.JSONField(default=dict, blank=True,
                                         help_text='e.g. {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 160}')
    generator_model = models.ForeignKey(
        "analysis.GeneratorModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Fine-tuned generator version (embedded backend). Empty: the study's generator version, if any.")
    consensus_template = models.ForeignKey("generation.PromptTemplate", null=True, blank=True,
                                           on_delete=models.PROTECT, related_name="+",
                                           limit_choices_to={"kind": "consensus"},
                                           help_text="Empty: the latest consensus template.")
    revision_template = models.ForeignKey("generation.PromptTemplate", null=True, blank=True,
                                          on_delete=models.PROTECT, related_name="+",
                                          limit_choices_to={"kind": "revision"},
                                          help_text="Empty: the latest revision template.")
    best_of_n = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(64)],
        help_text="Best-of-N: generate this many, show the study's number of candidates with the highest welfare. "
                  "0 = off.")
    reward_model = models.ForeignKey("analysis.RewardModel", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", help_text="Reward model version for best-of-N. Empty: the "
                                     "study's (the promoted version when retraining is on).")
    critique_round = models.BooleanField(default=True)
    opinions_as_candidates = models.BooleanField(default=False, help_text="Round 1 also shows the members' opinions "
                                                                          "as statements to rate (comparators).")
    leave_one_out_share = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of this arm's groups in the leave-one-out condition (blocks within the arm).")
    max_participants = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1, "A cap must be at least 1 (empty = no cap).")],
        help_text="No more groups for this arm once its groups hold this many members. Empty = no cap.")
    max_groups = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1, "A cap must be at least 1 (empty = no cap).")],
        help_text="No more groups for this arm once it has this many. Empty = no cap.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "name"], name="one_arm_name_per_study"),
            models.CheckConstraint(condition=Q(weight__gte=1), name="arm_weight_at_least_1"),
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_study(cls, study: Study, name: str = "default") -> StudyArm:
        """An (unsaved) arm with the study's own settings: the first arm of a study made in code."""
        return cls(study=study, name=name, weight=1, **{_attname(f): getattr(study, _attname(f))
                                                        for f in ARM_SETTINGS})

    def clean(self) -> None:
        try:
            study = self.study
        except Study.DoesNotExist:  # no study yet: the inline form sets it (admin.StudyArmFormSet)
            return
        if self.max_participants and self.max_participants < study.min_group_size:
            raise ValidationError({"max_participants": f"A cap of {self.max_participants} member(s) cannot fill one "
                                                       f"group of at least {study.min_group_size}."})
        problems = generation_settings_problems(self, study)
        if problems:
            raise ValidationError(problems)

    @property
    def reward_model_version_id(self) -> int | None:
        """The reward model best-of-N uses: the arm's own, else the study's."""
        return self.reward_model_id or self.study.reward_model_id

    def backend_options(self) -> dict:
        """Keyword options for ``generation.backends.get_backend`` (see ``Study.backend_options``)."""
        generator = self.generator_model if self.generator_model_id else self.study.generator_model
        if self.generation_backend == Study.Backend.EMBEDDED and generator is not None:
            return {"checkpoint": generator.checkpoint_path, "version": generator.pk}
        if self.generation_backend != Study.Backend.OPENAI:
            return {}
        from .endpoints import endpoint_check

        study = self.study
        endpoint_check(base_url=self.generation_base_url, api_key_env=study.generation_api_key_env)
        return {"base_url": self.generation_base_url, "model": self.generation_model,
                "api_key_env": study.generation_api_key_env, "concurrency": study.generation_concurrency,
                "timeout": float(study.generation_timeout_seconds)}

    def provenance(self) -> dict:
        """The arm's settings as stored with a group (``group_formed`` event) and in exports."""
        return {"arm_id": self.pk, "arm": self.name, "weight": self.weight,
                **{f: getattr(self, _attname(f)) for f in ARM_SETTINGS}}



class Group(models.Model):
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="groups")
    question = models.ForeignKey(Question, on_delete=models.PROTECT, related_name="groups")
    phase = models.CharField(max_length=16, choices=[(p.value, p.name.title()) for p in Phase], default=Phase.OPINION)
    deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    phase_started_at = models.DateTimeField()
    version = models.PositiveIntegerField(default=1, help_text="Bumped on every committed change.")
    winner_round1 = models.ForeignKey("Candidate", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    winner_round2 = models.ForeignKey("Candidate", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    generation_status = models.CharField(max_length=300, blank=True,
                                         help_text="Last generation error, shown on the monitor.")
    outcome = models.CharField(max_length=32, blank=True)
    condition = models.CharField(max_length=32, default="standard", db_index=True,
                                 help_text="'standard' or 'leave_one_out'.")
    excluded_participant = models.ForeignKey(
        "participants.Participant", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Leave-one-out condition: the member whose opinion was left out of the prompt (never shown).")
    arm = models.ForeignKey(StudyArm, null=True, blank=True, on_delete=models.PROTECT, related_name="groups",
                            help_text="The study arm whose settings this group runs with (assigned at formation).")
    paused_seconds_left = models.FloatField(
        null=True, blank=True,
        help_text="While its study is paused: the time the phase had left (the deadline is cleared, so nothing times "
                  "out); resuming sets the deadline to now + this.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["study", "phase"])]

    def __str__(self) -> str:
        return f"Group {self.pk} ({self.phase})"

    @property
    def arm_settings(self) -> StudyArm:
        """The arm this group runs with; a group made without one (imported, or by hand) runs with the study's
        first arm, else an unsaved arm of the study's own settings."""
        if self.arm_id is not None:
            return self.arm
        return self.study.arms.order_by("id").first() or StudyArm.from_study(self.study)

    @property
    def flow_config(self) -> FlowConfig:
        return dataclasses.replace(self.study.flow_config, critique_round=self.arm_settings.critique_round)


class AnswerQuerySet(models.QuerySet):
    """Opinions, ratings and critiques. ``human()`` is THE filter every analysis, export and training set reads
    through: by default it drops answers a bot wrote in a taken-over seat (``by_bot``) and every answer of a
    simulated participant (``Participant.is_simulated``); both can be asked for explicitly."""

    def human(self, *, include_bots: bool = False, include_simulated: bool = False) -> AnswerQuerySet:
        answers = self if include_bots else self.filter(by_bot=False)
        return answers if include_simulated else answers.filter(participant__is_simulated=False)


BY_BOT_HELP = "Written by the take-over bot in a dropped member's seat (even when built from their own draft)."


class Opinion(models.Model):
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="opinions")
    participant = models.ForeignKey("participants.Participant", on_delete=models.CASCADE, related_name="opinions")
    text = models.TextField()
    response_seconds = models.FloatField()
    by_timeout = models.BooleanField(default=False, help_text="Stored from the draft at the deadline.")
    by_bot = models.BooleanField(default=False, help_text=BY_BOT_HELP)
    submitted_at = models.DateTimeField(auto_now_add=True)

    objects = AnswerQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "participant"], name="one_opinion_per_member")]


class Candidate(models.Model):
    """A model-written statement, with everything needed to trace how it was produced."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="candidates")
    round = models.PositiveSmallIntegerField()
    index = models.PositiveSmallIntegerField()
    text = models.TextField()
    raw_text = models.TextField(help_text="The model's output before cleaning.")
    backend = models.CharField(max_length=32)
    model_id = models.CharField(max_length=300)
    template = models.ForeignKey("generation.PromptTemplate", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="candidates")
    template_name = models.CharField(max_length=64)
    template_version = models.PositiveIntegerField()
    prompt = models.JSONField(help_text="The rendered chat messages.")
    prompt_sha256 = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    seed = models.BigIntegerField()
    attempts = models.PositiveSmallIntegerField(default=1, help_text="Outputs tried before a usable one.")
    latency_ms = models.FloatField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    included_opinions = models.ManyToManyField(Opinion, related_name="candidates",
                                               help_text="Opinions that were in the prompt.")
    opinion_order = models.JSONField(default=list, help_text="Opinion ids in prompt order (shuffled per candidate).")
    class Source(models.TextChoices):
        MODEL = "model", "Model statement"
        OPINION = "opinion", "A member's opinion"

    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MODEL,
                              help_text="A model-written statement, or a member's opinion shown as a comparator "
                                        "(the study's 'opinions as candidates'; it can never win).")
    source_opinion = models.ForeignKey(Opinion, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="shown_as_candidates")
    shown = models.BooleanField(default=True, help_text="Shown to the members (best-of-N hides the rest).")
    welfare = models.FloatField(null=True, blank=True, help_text="Best-of-N welfare of predicted agreements.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group", "round", "index"]
        constraints = [models.UniqueConstraint(fields=["group", "round", "index"], name="one_candidate_per_slot")]

    def __str__(self) -> str:
        return f"G{self.group_id} R{self.round} #{self.index}"


class Prediction(models.Model):
    """A reward model's predicted agreement of one member with one candidate (best-of-N)."""

    reward_model = models.ForeignKey("analysis.RewardModel", on_delete=models.PROTECT, related_name="predictions")
    participant = models.ForeignKey("participants.Participant", on_delete=models.CASCADE, related_name="predictions")
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="predictions")
    predicted_agreement = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["reward_model", "participant", "candidate"],
                                               name="one_prediction_per_model_member_candidate")]


class Rating(models.Model):
    participant = models.ForeignKey("participants.Participant", on_delete=models.CASCADE, related_name="ratings")
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="ratings")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="ratings")
    round = models.PositiveSmallIntegerField()
    agreement = models.PositiveSmallIntegerField(null=True, validators=[MinValueValidator(1), MaxValueValidator(7)])
    quality = models.PositiveSmallIntegerField(null=True, validators=[MinValueValidator(1), MaxValueValidator(7)])
    rank = models.PositiveSmallIntegerField(null=True, help_text="1 = best; empty when the ranking was incomplete.")
    response_seconds = models.FloatField()
    by_timeout = models.BooleanField(default=False)
    by_bot = models.BooleanField(default=False, help_text=BY_BOT_HELP)
    submitted_at = models.DateTimeField(auto_now_add=True)

    objects = AnswerQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["participant", "candidate"], name="one_rating_per_member_candidate"),
            models.CheckConstraint(condition=Q(agreement__gte=1, agreement__lte=7) | Q(agreement__isnull=True),
                                   name="agreement_1_to_7"),
            models.CheckConstraint(condition=Q(quality__gte=1, quality__lte=7) | Q(quality__isnull=True),
                                   name="quality_1_to_7"),
        ]


class Critique(models.Model):
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="critiques")
    participant = models.ForeignKey("participants.Participant", on_delete=models.CASCADE, related_name="critiques")
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="critiques",
                                  help_text="The winning statement being critiqued.")
    text = models.TextField()
    response_seconds = models.FloatField()
    by_timeout = models.BooleanField(default=False)
    by_bot = models.BooleanField(default=False, help_text=BY_BOT_HELP)
    submitted_at = models.DateTimeField(auto_now_add=True)

    objects = AnswerQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "participant"], name="one_critique_per_member")]


class Draft(models.Model):
    """What a member has typed or chosen so far; stored as their answer (by timeout) at the deadline."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="drafts")
    participant = models.ForeignKey("participants.Participant", on_delete=models.CASCADE, related_name="drafts")
    phase = models.CharField(max_length=16)
    payload = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "participant", "phase"], name="one_draft_per_phase")]


class SubmissionReceipt(models.Model):
    """A stored submission's acknowledgement, by the ``ref`` the client gave it. A client that did not see the
    ack (the connection or the server went down, the page was reloaded) sends the same submission with the same
    ref again; it gets the original ack back and nothing is stored twice (``services.submission_replay``)."""

    class Kind(models.TextChoices):
        OPINION = "opinion"
        CRITIQUE = "critique"
        RATINGS = "ratings"

    participant = models.ForeignKey("participants.Participant", on_delete=models.CASCADE, related_name="receipts")
    ref = models.CharField(max_length=64)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="receipts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    round = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["participant", "ref"], name="one_receipt_per_ref")]


class GroupEvent(models.Model):
    """Append-only log of everything that happened to a group.

    On PostgreSQL a trigger refuses UPDATE and DELETE (migration ``0010_group_events_append_only``); here
    ``save()`` / ``delete()`` refuse, and PROTECT keeps a group or participant with events from being deleted
    (a cascade or SET NULL would be a DELETE / UPDATE of the log).
    """

    group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=48)
    participant = models.ForeignKey("participants.Participant", null=True, blank=True, on_delete=models.PROTECT)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("Group events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Group events are append-only.")
