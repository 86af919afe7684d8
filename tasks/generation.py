"""Sequence design with a (conditional) language model: sampling under constraints, an oracle
that ranks and refines the designs.

:class:`SampleOptions` holds every option and checks it once (:meth:`SampleOptions.check`,
raising :class:`~genoseq.InputError` naming the option); :func:`sample_designs` returns the
designs with the oracle's probabilities. Forbidden motifs (both strands) and homopolymer runs
are enforced while sampling, by banning the base that would break them; the GC range by
rejection (whole designs resampled, up to ``max_attempts``), with the rejections counted by
reason. With an oracle (a :class:`~genoseq.models.classifier.SequenceClassifier`) every design
gets the probability of the target class; ``select="top-k"`` oversamples and keeps the best
``num_samples``; ``refine_rounds`` resamples a random span of every design per round and keeps
the change where the oracle prefers it and the constraints still hold.

The same seed and options give the same designs on the same device.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from genoseq.design import DesignConstraints
from genoseq.errors import InputError


@dataclass
class SampleOptions:
    """How designs are sampled, constrained and selected.

    Args:
        prompt: Bases to continue (A C G T N, any case); empty starts from the condition token
            (or the beginning token).
        max_new_tokens: Bases to generate per design.
        num_samples: Designs returned.
        temperature: Softmax temperature; 0 is greedy.
        top_k: Sample among the k most likely bases only.
        top_p: Nucleus sampling: the smallest set of bases with this total probability.
        seed: Random seed.
        condition: Condition label of a conditionally fine-tuned model (prepends its token).
        constraints: GC range, forbidden motifs, longest homopolymer.
        max_attempts: Most designs sampled in all (default 20 x the designs needed).
        batch_size: Designs sampled together.
        oracle_class: The oracle class a design should be (default: ``condition``).
        select: ``all`` keeps every accepted design; ``top-k`` samples ``oversample`` times as
            many and keeps the ``num_samples`` the oracle rates highest.
        oversample: Candidates per kept design with ``select="top-k"``.
        refine_rounds: Oracle-guided refinement rounds.
        refine_span: Bases resampled per refinement round.
    """

    prompt: str = ""
    max_new_tokens: int = 200
    num_samples: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    condition: str | None = None
    constraints: DesignConstraints = field(default_factory=DesignConstraints)
    max_attempts: int | None = None
    batch_size: int = 64
    oracle_class: str | None = None
    select: Literal["all", "top-k"] = "all"
    oversample: int = 4
    refine_rounds: int = 0
    refine_span: int = 10

    @property
    def needed(self) -> int:
        """Designs to accept before the oracle selects (``num_samples`` x ``oversample`` for top-k)."""
        return self.num_samples * (self.oversample if self.select == "top-k" else 1)

    @property
    def budget(self) -> int:
        return self.max_attempts if self.max_attempts is not None else 20 * self.needed

    def check(self, lm, oracle=None) -> str | None:
        """Raise :class:`InputError` naming the first bad option; return the oracle's target class."""
        _check_sampling(self)
        if (self.select == "top-k" or self.refine_rounds) and oracle is None:
            raise InputError("oracle: select=top-k and refine_rounds need oracle=true, a classifier that ranks the "
                             "designs (on the command line: --select top-k needs --oracle CLASSIFIER)",
                             field="oracle", kind="no_oracle")
        if self.refine_rounds and not 1 <= self.refine_span <= self.max_new_tokens:
            raise InputError(f"refine_span: {self.refine_span} must be in 1..max_new_tokens ({self.max_new_tokens})",
                             field="refine_span", kind="too_long")
        if self.budget < self.needed:
            raise InputError(f"max_attempts: {self.budget} is fewer than the {self.needed} designs needed",
                             field="max_attempts", kind="too_small")
        labels = list(lm.tokenizer.condition_labels)
        if self.condition is not None and self.condition not in labels:
            raise InputError(f"condition: unknown condition label {self.condition!r} (the model knows "
                             f"{', '.join(labels) or 'none'}; an unknown label cannot be sampled)",
                             field="condition", kind="unknown_condition")
        try:
            lm.tokenizer.encode(self.prompt, name="prompt")
        except InputError as err:
            raise InputError(f"prompt: {err.reason} (position {err.position})", field="prompt",
                             kind="invalid_character") from None
        if oracle is None:
            return None
        target = self.oracle_class or self.condition
        if target not in oracle.classes:
            raise InputError(f"oracle_class: oracle class {target!r} is not one of the oracle's classes {list(oracle.classes)}",
                             field="oracle_class", kind="unknown_class")
        return target


def _check_sampling(o: SampleOptions) -> None:
    if o.num_samples < 1 or o.max_new_tokens < 1:
        raise InputError("num_samples and max_new_tokens must be >= 1",
                         field="num_samples" if o.num_samples < 1 else "max_new_tokens")
    if o.top_p is not None and not 0 < o.top_p <= 1:
        raise InputError(f"top_p must be in (0, 1], got {o.top_p}", field="top_p")
    if o.top_k is not None and o.top_k < 1:
        raise InputError(f"top_k must be >= 1, got {o.top_k}", field="top_k")
    if o.temperature < 0:
        raise InputError(f"temperature must be >= 0, got {o.temperature}", field="temperature")
    if o.select not in ("all", "top-k"):
        raise InputError(f"select must be 'all' or 'top-k', got {o.select!r}", field="select")
    if o.select == "top-k" and o.oversample < 1:
        raise InputError(f"oversample must be >= 1, got {o.oversample}", field="oversample")


@dataclass
class Designs:
    """What :func:`sample_designs` returns: the designs, best first where the oracle ranked them."""

    sequences: list[str]
    proba: np.ndarray | None  # (n, classes) oracle probabilities, or None without an oracle
    p_oracle: np.ndarray | None  # (n,) the oracle's probability of the target class
    target: str | None  # the oracle class
    attempts: int
    rejected: int  # designs rejected by the constraints
    rejected_by_reason: dict[str, int]
    needed: int
    accepted: int  # designs that met the constraints (before top-k selection)
    refinement_improved: list[int]  # designs improved in each refinement round
    shortfall: int  # designs asked for and not delivered


class _Sampler:
    """Draws designs from one model with fixed options, prefix and random generator."""

    def __init__(self, lm, options: SampleOptions) -> None:
        import torch

        from genoseq.design import ConstraintMasker, to_base_indices
        from genoseq.tokenizer import BOS

        self.lm, self.o = lm, options
        prompt_ids = lm.tokenizer.encode(options.prompt, name="prompt")
        self.prompt = lm.tokenizer.decode(prompt_ids)
        self.condition_ids = [lm.tokenizer.condition_id(options.condition)] if options.condition is not None else []
        self.prefix = torch.tensor(self.condition_ids + prompt_ids.astype(np.int64).tolist() or [BOS], dtype=torch.long)
        self.prompt_bases = to_base_indices(self.prompt)
        c = options.constraints
        self.masker = ConstraintMasker(c) if (c.forbidden or c.max_homopolymer) else None
        device = next(lm.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(options.seed)
        self.decode = np.frombuffer(b"ACGT", dtype=np.uint8)

    def _sample(self, prefixes, history, n_new: int):
        from genoseq.models.conditional import sample_constrained

        o = self.o
        return sample_constrained(self.lm, prefixes, history, n_new, masker=self.masker, temperature=o.temperature,
                                  top_k=o.top_k, top_p=o.top_p, generator=self.generator)

    def draw(self, n: int) -> list[str]:
        new = self._sample(self.prefix[None].repeat(n, 1), np.tile(self.prompt_bases, (n, 1)), self.o.max_new_tokens)
        return [self.prompt + self.decode[row].tobytes().decode() for row in new]

    def resample_span(self, designs: list[str], start: int) -> list[str]:
        """Each design with ``refine_span`` bases from ``start`` resampled given what precedes them."""
        import torch

        from genoseq.design import to_base_indices
        from genoseq.tokenizer import BOS

        span = self.o.refine_span
        lefts = [s[:start] for s in designs]
        left_ids = torch.from_numpy(np.stack([self.lm.tokenizer.encode(s) for s in lefts]).astype(np.int64)) \
            if start else torch.empty((len(lefts), 0), dtype=torch.long)
        prefixes = torch.cat([torch.tensor(self.condition_ids, dtype=torch.long).repeat(len(lefts), 1), left_ids], 1)
        if prefixes.shape[1] == 0:
            prefixes = torch.full((len(lefts), 1), BOS, dtype=torch.long)
        history = np.stack([to_base_indices(s) for s in lefts]) if start else np.zeros((len(lefts), 0), np.int8)
        spans = self._sample(prefixes, history, span)
        return [left + self.decode[new].tobytes().decode() + s[start + span :]
                for left, new, s in zip(lefts, spans, designs)]


def _accept(sampler: _Sampler, options: SampleOptions, progress) -> tuple[list[str], Counter, int]:
    """Sample until ``options.needed`` designs meet the constraints or the budget is spent."""
    from genoseq.progress import Progress

    needed, budget, constraints = options.needed, options.budget, options.constraints
    accepted: list[str] = []
    rejected: Counter = Counter()
    attempts = 0
    with Progress(needed, desc="generate sample", unit="design", mode=progress) as bar:
        while len(accepted) < needed and attempts < budget:
            rate = max(len(accepted) / attempts, 0.05) if attempts else 1.0
            n = min(options.batch_size, budget - attempts, math.ceil((needed - len(accepted)) / rate))
            before = len(accepted)
            for seq in sampler.draw(n):
                why = constraints.violations(seq)
                if why:
                    rejected.update(why)
                    rejected["designs"] += 1
                elif len(accepted) < needed:
                    accepted.append(seq)
            attempts += n
            bar.set_fields(attempts=attempts)
            bar.update(len(accepted) - before)
    if not accepted:
        raise InputError(f"no design met the constraints in {attempts} attempts ({dict(rejected)}); "
                         "relax them or raise max_attempts", kind="no_design")
    return accepted, rejected, attempts


def _rank_and_refine(sampler: _Sampler, options: SampleOptions, oracle, k: int,
                     accepted: list[str]) -> tuple[list[str], np.ndarray, list[int]]:
    """The oracle's probabilities; top-k selection; refinement rounds; best first for top-k."""
    o = options
    proba = oracle.predict_proba(accepted, batch_size=o.batch_size)
    if o.select == "top-k":
        keep = np.argsort(-proba[:, k], kind="stable")[: o.num_samples]
        accepted, proba = [accepted[i] for i in keep], proba[keep]
    rng = np.random.default_rng([o.seed, 1])
    refinement: list[int] = []
    for _ in range(o.refine_rounds):
        start = len(sampler.prompt) + int(rng.integers(0, o.max_new_tokens - o.refine_span + 1))
        candidates = sampler.resample_span(accepted, start)
        new_proba = oracle.predict_proba(candidates, batch_size=o.batch_size)
        better = [i for i, c in enumerate(candidates) if new_proba[i, k] > proba[i, k] and o.constraints.satisfied(c)]
        for i in better:
            accepted[i], proba[i] = candidates[i], new_proba[i]
        refinement.append(len(better))
    order = np.argsort(-proba[:, k], kind="stable") if o.select == "top-k" else np.arange(len(accepted))
    return [accepted[i] for i in order], proba[order], refinement


def sample_designs(lm, options: SampleOptions, oracle=None, progress: bool | str = False) -> Designs:
    """Designs from ``lm`` under ``options``, ranked and refined by ``oracle`` when given.

    Fewer than ``num_samples`` designs come back (``shortfall``) when the constraints reject
    too many within ``max_attempts``; none at all is an :class:`InputError`.
    """
    target = options.check(lm, oracle)
    sampler = _Sampler(lm, options)
    accepted, rejected, attempts = _accept(sampler, options, progress)
    proba, p_oracle, refinement = None, None, []
    n_rejected, n_accepted = int(rejected.pop("designs", 0)), len(accepted)
    if oracle is not None:
        k = list(oracle.classes).index(target)
        accepted, proba, refinement = _rank_and_refine(sampler, options, oracle, k, accepted)
        p_oracle = proba[:, k]
    return Designs(accepted, proba, p_oracle, target, attempts, n_rejected, dict(sorted(rejected.items())),
                   options.needed, n_accepted, refinement, max(0, options.num_samples - len(accepted)))


__all__ = ["Designs", "SampleOptions", "sample_designs"]
