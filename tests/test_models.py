import numpy as np
import pytest
import torch

from deltalearn.errors import DeltaError
from deltalearn.models import Degradation, TierSpec, load_model
from deltalearn.models.degrade import rtn_quantize_
from deltalearn.models.loading import convert_gguf, tier_fingerprint
from deltalearn.models.quality import bits_per_char


def test_load_local_dir_and_count_parameters(tiny_model_dir):
    lm = load_model(TierSpec(name="tiny", model=str(tiny_model_dir)))
    assert lm.size == sum(p.numel() for p in lm.model.parameters())
    assert lm.model.dtype == torch.float32 and not lm.model.training
    declared = load_model(TierSpec(name="tiny", model=str(tiny_model_dir), size=3_000_000_000))
    assert declared.size == 3_000_000_000


def test_drop_layers_makes_a_smaller_model_that_still_generates_with_kv_cache(tiny_model_dir):
    base = load_model(TierSpec(name="t", model=str(tiny_model_dir)))
    weak = load_model(TierSpec(name="w", model=str(tiny_model_dir), degrade=Degradation(drop_layers=[1, 2])))
    assert weak.model.config.num_hidden_layers == 2 and len(weak.model.model.layers) == 2
    assert weak.size < base.size
    # the kept layers are the original 0 and 3, renumbered for the cache
    assert [l.self_attn.layer_idx for l in weak.model.model.layers] == [0, 1]
    torch.testing.assert_close(weak.model.model.layers[1].mlp.up_proj.weight, base.model.model.layers[3].mlp.up_proj.weight)
    ids = torch.tensor([[1, 5, 9, 13]])
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=2, eos_token_id=None)
    with_cache = weak.model.generate(ids, use_cache=True, **kw)
    no_cache = weak.model.generate(ids, use_cache=False, **kw)
    assert torch.equal(with_cache, no_cache)
    assert tier_fingerprint(weak.spec) != tier_fingerprint(base.spec)
    assert tier_fingerprint(weak.spec) == weak.fingerprint


def test_bad_degradations_are_rejected(tiny_model_dir):
    with pytest.raises(DeltaError, match=r"drop_layers \[1, 9\] must be distinct indices in 0..3"):
        load_model(TierSpec(name="w", model=str(tiny_model_dir), degrade=Degradation(drop_layers=[1, 9])))
    with pytest.raises(DeltaError, match="cannot drop all 4 layers"):
        load_model(TierSpec(name="w", model=str(tiny_model_dir), degrade=Degradation(drop_layers=[0, 1, 2, 3])))


def test_rtn_quantize_against_hand_computed_values():
    w = torch.tensor([[0.1, -0.3, 0.25, 0.7], [1.0, 0.5, -0.2, 0.05]])
    rtn_quantize_(w, bits=3, group=2)  # qmax 3, one scale per pair of weights
    s = [0.3 / 3, 0.7 / 3, 1.0 / 3, 0.2 / 3]
    expected = torch.tensor(
        [[1 * s[0], -3 * s[0], 1 * s[1], 3 * s[1]], [3 * s[2], 2 * s[2], -3 * s[3], 1 * s[3]]]
    )
    torch.testing.assert_close(w, expected)


def test_quantised_tier_changes_weights_and_still_scores_prose(tiny_model_dir):
    base = load_model(TierSpec(name="t", model=str(tiny_model_dir)))
    q = load_model(TierSpec(name="q", model=str(tiny_model_dir), degrade=Degradation(quantize_bits=2, quantize_group=16)))
    assert not torch.equal(q.model.model.layers[0].mlp.up_proj.weight, base.model.model.layers[0].mlp.up_proj.weight)
    paras = ["The quick brown fox jumps over the lazy dog."]
    assert 0 < bits_per_char(q.model, q.tokenizer, paras) < 100


def test_model_not_found_errors(tmp_path, tiny_model_dir):
    with pytest.raises(DeltaError, match=r"model 'm': path not found or not a model: /no/such/dir"):
        load_model(TierSpec(name="m", model="/no/such/dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeltaError, match="directory without config.json"):
        load_model(TierSpec(name="m", model=str(tmp_path / "empty")))
    with pytest.raises(DeltaError, match=r"GGUF file not found"):
        load_model(TierSpec(name="m", model=str(tmp_path / "x.gguf")))
    with pytest.raises(DeltaError, match=r"'org/unknown-model' is not a local directory or .gguf file, and the hub could not provide it"):
        load_model(TierSpec(name="m", model="org/unknown-model"))


def test_gguf_of_unsupported_architecture(tmp_path):
    import gguf

    path = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(path), "nonsense")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(DeltaError, match=r"odd.gguf: GGUF architecture 'nonsense' is not supported"):
        convert_gguf(str(path))
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(DeltaError, match="junk.gguf: not a readable GGUF file"):
        load_model(TierSpec(name="j", model=str(tmp_path / "junk.gguf")))


def test_the_ladder_measurement_reports_every_tier_and_its_order_per_metric(tmp_path, tiny_model_dir):
    from deltalearn.studies.ladder_measure import DEFAULT, measure_ladder
    from deltalearn.models.ladder import Ladder

    ladder = Ladder.model_validate({"tiers": [{"name": "t4", "model": str(tiny_model_dir)},
                                              {"name": "t2", "model": str(tiny_model_dir), "degrade": {"drop_layers": [1, 2]}}]})
    res = measure_ladder(ladder, tmp_path / "m", limits={s: 2 for s in DEFAULT})
    assert set(res["tiers"]) == {"t4", "t2"}
    for row in res["tiers"].values():
        assert row["bits_per_char"] > 0 and row["tokens_per_s"] > 0 and all(row[s]["n"] == 2 for s in DEFAULT)
    assert len(res["orders"]) == 1 + len(DEFAULT) and all(sorted(o) == ["t2", "t4"] for o in res["orders"].values())
    assert "| t4 |" in (tmp_path / "m" / "ladder.md").read_text()
    again = measure_ladder(ladder, tmp_path / "m", limits={s: 2 for s in DEFAULT})  # reused: same inputs, same figures
    for t in res["tiers"]:
        assert again["tiers"][t]["bits_per_char"] == res["tiers"][t]["bits_per_char"]
        assert all(again["tiers"][t][s]["mean"] == res["tiers"][t][s]["mean"] for s in DEFAULT)


def test_the_ladder_table_marks_ties_in_each_order():
    from deltalearn.studies.ladder_measure import SUITES, ladder_table

    def row(bpc, mean):
        return {"params": 1e8, "bits_per_char": bpc, "tokens_per_s": 1.0,
                **{s: {"mean": mean, "ci95": [0.0, 1.0]} for s in SUITES}}

    rows = {"a": row(1.0, 0.5), "b": row(1.2, 0.0), "c": row(1.5, 0.0)}
    orders = {"bits_per_char (lower is better)": ["a", "b", "c"], **{f"{s} {m}": ["a", "b", "c"] for s, (m, _) in SUITES.items()}}
    text = ladder_table({"tiers": rows, "limits": {s: 2 for s in SUITES}, "orders": orders})
    assert "- bits_per_char (lower is better): a > b > c" in text
    assert f"- humaneval {SUITES['humaneval'][0]}: a > b = c" in text
