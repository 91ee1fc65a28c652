"""Build a judge from its CLI / recipe name."""

from __future__ import annotations

from ..errors import DeltaError
from .judges import PairwiseJudge, RewardModelJudge, RubricJudge, UtilityJudge
from .utility import UTILITIES, regex_count

NAMES = ("bold_sections, distinct_bold_sections, length_words, length_chars, regex:PATTERN, ifcheck:JSON, "
         "llm-rubric, llm-pairwise, reward-model, loglik")


def make_judge(name: str, *, judge_model: str | None = None, endpoint: str | None = None, batch_size: int = 8):
    if name in UTILITIES:
        return UtilityJudge(name, UTILITIES[name])
    if name.startswith("regex:"):
        return UtilityJudge(name, regex_count(name.removeprefix("regex:")))
    if name.startswith("ifcheck:"):  # a verifiable instruction, e.g. ifcheck:{"check": "max_words", "n": 50}
        import json

        from ..evaluate.ifcheck import CHECKS, check

        try:
            spec = json.loads(name.removeprefix("ifcheck:"))
            assert isinstance(spec, dict) and spec.get("check") in CHECKS
        except (ValueError, AssertionError):
            raise DeltaError(f"judge {name!r}: expected ifcheck:{{\"check\": one of {sorted(CHECKS)}, ...params}}") from None
        return UtilityJudge(name, lambda text: float(check(spec, text)))
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
