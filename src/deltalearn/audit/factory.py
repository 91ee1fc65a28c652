"""Build a judge from its CLI / recipe name."""

from __future__ import annotations

from ..errors import DeltaError
from .judges import PairwiseJudge, RewardModelJudge, RubricJudge, UtilityJudge
from ..metrics.text import UTILITIES, regex_count

# The one list of judges: `deltalearn audit --help`, recipe validation and make_judge read it.
# name -> (what it scores, what it needs: None, "model" (a local model) or "model_or_endpoint")
JUDGES = {
    **{name: (f"programmatic: {name.replace('_', ' ')} of the answer", None) for name in UTILITIES},
    "regex:PATTERN": ("programmatic: matches of a regular expression (multiline)", None),
    "ifcheck:JSON": ('programmatic: one verifiable instruction, e.g. ifcheck:{"check": "max_words", "n": 50}', None),
    "asserts": ("programmatic: the answer's code run in the sandbox against the asserts its prompt states (1 pass, 0 fail)", None),
    "ifeval": ("programmatic: the share of the prompt's IFEval constraints the answer satisfies (prompts from source: ifeval)", None),
    "llm-rubric": ("an LLM grades each answer 1-10 on four aspects", "model_or_endpoint"),
    "llm-pairwise": ("an LLM compares the two answers, both orders", "model_or_endpoint"),
    "reward-model": ("a sequence-classification reward model's score", "model"),
    "loglik": ("a local model's repetition-aware log-likelihood of the answer", "model"),
}
NAMES = ", ".join(JUDGES)


def judge_problem(name: str, judge_model: str | None = None, endpoint: str | None = None, *,
                  model_supplied: bool = False) -> str | None:
    """Why `name` (with these options) is not a usable judge, or None; loads nothing.
    `model_supplied`: the caller provides a model when none is named (a study's student)."""
    import json
    import re

    from ..metrics.ifcheck import CHECKS

    if name.startswith("regex:"):
        try:
            re.compile(name.removeprefix("regex:"))
        except re.error as e:
            return f"judge {name!r}: invalid regular expression ({e})"
        return None
    if name.startswith("ifcheck:"):
        try:
            spec = json.loads(name.removeprefix("ifcheck:"))
        except ValueError:
            spec = None
        if not isinstance(spec, dict) or spec.get("check") not in CHECKS:
            return f'judge {name!r}: expected ifcheck:{{"check": one of {sorted(CHECKS)}, ...params}}'
        return None
    if name not in JUDGES:
        return f"unknown judge {name!r} (judges: {NAMES})"
    needs = JUDGES[name][1]
    if needs == "model_or_endpoint" and not (judge_model or endpoint or model_supplied):
        return f"judge {name} needs judge_model (a local model) or endpoint"
    if endpoint and not judge_model:
        return f"judge {name}: an endpoint judge needs judge_model (the endpoint's model name)"
    if needs == "model" and not (judge_model or model_supplied):
        return f"judge {name} needs judge_model (a local model: path, hub id or embedded:...)"
    if needs is None and (judge_model or endpoint):
        return f"judge {name} is programmatic: it takes no judge_model or endpoint"
    if needs == "model" and endpoint:
        return f"judge {name} runs a local model: it takes no endpoint"
    return None


def make_judge(name: str, *, judge_model: str | None = None, endpoint: str | None = None, batch_size: int = 8):
    problem = judge_problem(name, judge_model, endpoint)
    if problem:
        raise DeltaError(problem)
    if name in UTILITIES:
        return UtilityJudge(name, UTILITIES[name])
    if name.startswith("regex:"):
        return UtilityJudge(name, regex_count(name.removeprefix("regex:")))
    if name.startswith("ifcheck:"):  # a verifiable instruction, e.g. ifcheck:{"check": "max_words", "n": 50}
        import json

        from ..metrics.ifcheck import CHECKS, check

        try:
            spec = json.loads(name.removeprefix("ifcheck:"))
            assert isinstance(spec, dict) and spec.get("check") in CHECKS
        except (ValueError, AssertionError):
            raise DeltaError(f"judge {name!r}: expected ifcheck:{{\"check\": one of {sorted(CHECKS)}, ...params}}") from None
        return UtilityJudge(name, lambda text: float(check(spec, text)))
    if name == "asserts":
        from .judges import AssertsJudge

        return AssertsJudge()
    if name == "ifeval":
        from ..generate.ifprompts import constraints_by_text
        from .judges import IFEvalJudge

        constraints_by_text()  # the checkers' packages and resources, before any pair is read
        return IFEvalJudge()
    if name in ("llm-rubric", "llm-pairwise"):
        backend = _backend(judge_model, endpoint)
        cls = RubricJudge if name == "llm-rubric" else PairwiseJudge
        return cls(backend, name=f"{name}:{judge_model or 'endpoint'}", batch_size=batch_size)
    if name == "reward-model":
        if not judge_model:
            raise DeltaError("judge reward-model needs --judge-model (a sequence-classification model directory or hub id)")
        return RewardModelJudge(judge_model, name=f"reward-model:{judge_model}")
    if name == "loglik":
        if not judge_model:
            raise DeltaError("judge loglik needs --judge-model (a local model: path, hub id or embedded:...)")
        from ..models import TierSpec, load_model
        from .judges import LoglikJudge

        loaded = load_model(TierSpec(name="judge", model=judge_model))
        return LoglikJudge(loaded.model, loaded.tokenizer, name=f"loglik:{judge_model}", batch_size=batch_size)
    raise DeltaError(f"unknown judge {name!r} (judges: {NAMES})")


def _backend(judge_model: str | None, endpoint: str | None):
    if endpoint:
        from ..generate.openai_api import EndpointConfig, OpenAIBackend

        if not judge_model:
            raise DeltaError("an endpoint judge needs --judge-model (the endpoint's model name)")
        return OpenAIBackend(EndpointConfig(base_url=endpoint, model=judge_model))
    if not judge_model:
        raise DeltaError("an llm judge needs --judge-model (a local model) or --endpoint")
    from ..generate.hf import HFBackend
    from ..models import TierSpec, load_model

    return HFBackend(load_model(TierSpec(name="judge", model=judge_model)))
