import json

import pytest

from deltalearn.errors import DeltaError
from deltalearn.pairs.dataset import build_pairs, load_pairs, write_pairs
from deltalearn.pairs.filters import FilterConfig, drop_reason
from deltalearn.pairs.strategies import PairSpec, StrategyConfig, plan_pairs

SIZES = {"q0.5b": 500, "q1.5b": 1500, "q3b": 3000, "q7b": 7000}


def names(specs):
    return [(s.chosen, s.rejected) for s in specs]


def test_size_heuristic_pairs_adjacent_tiers_bigger_chosen():
    assert names(plan_pairs(StrategyConfig(strategy="size"), SIZES)) == [("q7b", "q3b"), ("q3b", "q1.5b"), ("q1.5b", "q0.5b")]
    assert names(plan_pairs(StrategyConfig(strategy="size", tiers=["q1.5b", "q3b"]), SIZES)) == [("q3b", "q1.5b")]


def test_all_pairs_gives_the_papers_21_datasets_from_7_sizes():
    sizes = {f"m{s}": s for s in (5, 15, 30, 70, 140, 320, 720)}
    specs = plan_pairs(StrategyConfig(strategy="all_pairs"), sizes)
    assert len(specs) == 21 and len({s.name for s in specs}) == 21
    assert all(sizes[s.chosen] > sizes[s.rejected] for s in specs)


def test_explicit_and_self_vs_weaker():
    # explicit may go against size: reversed controls
    assert names(plan_pairs(StrategyConfig(strategy="explicit", chosen="q1.5b", rejected="q3b"), SIZES)) == [("q1.5b", "q3b")]
    assert names(plan_pairs(StrategyConfig(strategy="self_vs_weaker", student="q3b"), SIZES)) == [("q3b", "q0.5b"), ("q3b", "q1.5b")]
    assert names(plan_pairs(StrategyConfig(strategy="self_vs_weaker", student="q3b", rejected="q1.5b"), SIZES)) == [("q3b", "q1.5b")]


def test_strategy_errors():
    with pytest.raises(DeltaError, match='unknown tier "q9b"'):
        plan_pairs(StrategyConfig(strategy="explicit", chosen="q9b", rejected="q3b"), SIZES)
    with pytest.raises(DeltaError, match="same size"):
        plan_pairs(StrategyConfig(strategy="size"), {"a": 5, "b": 5})
    with pytest.raises(DeltaError, match="no tier is smaller"):
        plan_pairs(StrategyConfig(strategy="self_vs_weaker", student="q0.5b"), SIZES)
    with pytest.raises(ValueError, match="needs `chosen` and `rejected`"):
        StrategyConfig(strategy="explicit", chosen="a")


def rec(tier, pid, response, finish="stop", size=1):
    return {"tier": tier, "model": f"model-{tier}", "size": size, "prompt_id": pid, "prompt": f"prompt {pid}",
            "category": "c", "split": "train", "response": response, "finish_reason": finish, "n_tokens": 5,
            "settings": {"max_new_tokens": 5}}


def test_filters_each_reason():
    f = FilterConfig(min_length_ratio=0.5, max_length_ratio=4)
    assert drop_reason(rec("a", 1, ""), rec("b", 1, "x"), f) == "empty"
    assert drop_reason(rec("a", 1, " same "), rec("b", 1, "same"), f) == "identical"
    assert drop_reason(rec("a", 1, "long", "length"), rec("b", 1, "x y"), f) == "truncated"
    assert drop_reason(rec("a", 1, "x" * 50), rec("b", 1, "y" * 10), f) == "length_ratio"
    assert drop_reason(rec("a", 1, "x" * 3), rec("b", 1, "y" * 10), f) == "length_ratio"
    assert drop_reason(rec("a", 1, "good answer"), rec("b", 1, "bad"), f) is None
    assert drop_reason(rec("a", 1, "long", "length"), rec("b", 1, "x y"), FilterConfig(drop_truncated=False)) is None


def make_generations():
    big = {p: rec("big", p, f"big answer {p}", size=10) for p in ["1", "2", "3", "4"]}
    small = {p: rec("small", p, f"small answer {p}", size=5) for p in ["1", "2", "3", "4"]}
    small["2"]["response"] = ""
    small["3"]["response"] = "big answer 3"
    big["4"]["finish_reason"] = "length"
    return {"big": big, "small": small}


def test_build_write_and_reload_pairs_with_provenance(tmp_path):
    rows, summary = build_pairs(PairSpec("big", "small"), make_generations(), FilterConfig())
    assert summary == {"dataset": "big__over__small", "prompts": 4, "kept": 1, "empty": 1, "identical": 1,
                       "truncated": 1, "length_ratio": 0, "cut": 0}
    row = rows[0]
    assert row["prompt"] == [{"role": "user", "content": "prompt 1"}]
    assert row["chosen"] == [{"role": "assistant", "content": "big answer 1"}]
    assert row["rejected"] == [{"role": "assistant", "content": "small answer 1"}]
    assert (row["chosen_model"], row["rejected_model"], row["chosen_size"], row["rejected_size"]) == ("model-big", "model-small", 10, 5)
    assert json.loads(row["generation"]) == {"max_new_tokens": 5}
    info = write_pairs(rows, tmp_path / "pairs" / "big__over__small")
    assert load_pairs(info["jsonl"]) == rows
    assert load_pairs(info["saved_dataset"]) == rows


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "p", "chosen": "c"}, r'line 1: field "rejected": missing'),
        ({"prompt": "p", "chosen": [{"role": "assistant", "content": " "}], "rejected": "r"}, r'line 1: field "chosen": is empty'),
        ({"prompt": "p", "chosen": 3, "rejected": "r"}, r'line 1: field "chosen": expected text or a list of chat messages'),
    ],
)
def test_load_pairs_rejects_bad_rows(tmp_path, row, message):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(row) + "\n")
    with pytest.raises(DeltaError, match="bad.jsonl " + message):
        load_pairs(p)


def test_datasets_of_tiers_with_dots_in_their_names_get_their_own_files(tmp_path):
    """qwen-coder-0.5b>gemma3-270m and qwen-coder-0.5b>smollm2-135m must not share a file."""
    gens = make_generations()
    rows, _ = build_pairs(PairSpec("big", "small"), gens, FilterConfig(drop_truncated=False))
    a = write_pairs(rows, tmp_path / "pairs" / "qwen-coder-0.5b_over_gemma3-270m")
    b = write_pairs(rows[:1], tmp_path / "pairs" / "qwen-coder-0.5b_over_smollm2-135m")
    assert a["jsonl"].endswith("qwen-coder-0.5b_over_gemma3-270m.jsonl")
    assert a["jsonl"] != b["jsonl"]
    assert len(load_pairs(a["jsonl"])) == len(rows) == 2 and len(load_pairs(b["jsonl"])) == 1


def test_trl_dpo_trainer_accepts_our_dataset_unchanged(tmp_path, tiny_model_dir):
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    gens = make_generations()
    rows, _ = build_pairs(PairSpec("big", "small"), gens, FilterConfig(drop_truncated=False))
    info = write_pairs(rows, tmp_path / "ds")
    ds = load_from_disk(info["saved_dataset"])
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    args = DPOConfig(output_dir=str(tmp_path / "out"), report_to=[], per_device_train_batch_size=2, max_steps=1,
                     use_cpu=True, bf16=False, dataset_num_proc=None, logging_steps=1)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    prepared = trainer.train_dataset
    assert len(prepared) == len(rows) == 2
    first = prepared[0]
    assert tok.decode(first["chosen_ids"]) == "big answer 1<|im_end|>\n"
    assert tok.decode(first["rejected_ids"]) == "small answer 1<|im_end|>\n"
    assert tok.decode(first["prompt_ids"]) == "<|im_start|>user\nprompt 1<|im_end|>\n<|im_start|>assistant\n"
    trainer.train()  # one real step on our data
    assert trainer.state.global_step == 1
