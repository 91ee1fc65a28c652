import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from deltalearn.generate.base import Completion, GenerationSettings
from deltalearn.generate.cache import GenerationCache
from deltalearn.generate.hf import HFBackend
from deltalearn.generate.prompts import Prompt
from deltalearn.generate.run import GenerateConfig, generate_tier
from deltalearn.io import read_jsonl
from deltalearn.models import TierSpec, load_model


class FakeBackend:
    """Answers `echo:<prompt>`; optionally fails after some batches, like a crash mid-run."""

    model_id, size, fingerprint = "fake", 1000, "fakefp"

    def __init__(self, fail_after=None):
        self.batches, self.fail_after = [], fail_after

    def prompt_length(self, conv):
        return len(conv[0]["content"])

    def generate(self, convs, settings):
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("killed")
        self.batches.append([c[0]["content"] for c in convs])
        return [Completion(text="echo:" + c[0]["content"], n_tokens=3, finish_reason="stop") for c in convs]

    def close(self):
        pass


def prompts(n):
    return [Prompt(id=f"p{i}", text="x" * (n - i) + f" question {i}") for i in range(n)]


@pytest.fixture
def sharp_tiny(tiny_model_dir):
    """The tiny random model with a scaled-up head, so greedy argmax has no near-ties."""
    lm = load_model(TierSpec(name="tiny", model=str(tiny_model_dir)))
    with torch.no_grad():
        lm.model.lm_head.weight.mul_(30.0)
    return lm


def test_batched_left_padded_generation_equals_one_at_a_time(sharp_tiny):
    backend = HFBackend(sharp_tiny)
    s = GenerationSettings(max_new_tokens=12)
    convs = [[{"role": "user", "content": t}] for t in ["Hi", "Explain why the sky is blue in detail please", "What is 2+2?"]]
    batched = backend.generate(convs, s)
    single = [backend.generate([c], s)[0] for c in convs]
    assert [b.text for b in batched] == [o.text for o in single]
    assert [b.n_tokens for b in batched] == [o.n_tokens for o in single]
    for o in batched:
        assert o.finish_reason in ("stop", "length")
        assert o.rendered_prompt.startswith("<|im_start|>user\n") and o.rendered_prompt.endswith("<|im_start|>assistant\n")
        assert o.n_tokens <= 12 and (o.finish_reason == "stop" or o.n_tokens == 12)


def test_resume_skips_done_prompts_and_sorts_by_length(tmp_path):
    cfg = GenerateConfig(batch_size=2)
    tier = TierSpec(name="fake", model="fake")
    cache = tmp_path / "gen.jsonl"
    ps = prompts(7)
    crashing = FakeBackend(fail_after=2)
    with pytest.raises(RuntimeError):
        generate_tier(tier, ps, cfg, cache, backend=crashing)
    done = read_jsonl(cache)
    assert len(done) == 4  # two whole batches survived the crash
    lengths = [len(t) for b in crashing.batches for t in b]
    assert lengths == sorted(lengths)  # shortest prompts first, so batches pad little
    fresh = FakeBackend()
    res = generate_tier(tier, ps, cfg, cache, backend=fresh)
    assert sum(len(b) for b in fresh.batches) == 3  # only what was missing
    assert res["stats"] == res["stats"] | {"cached": 4, "generated": 3}
    assert {pid: r["response"] for pid, r in res["records"].items()} == {p.id: "echo:" + p.text for p in ps}
    assert len(read_jsonl(cache)) == 7
    # a changed setting is a different key: everything is generated again
    again = FakeBackend()
    generate_tier(tier, ps, GenerateConfig(batch_size=2, settings={"max_new_tokens": 5}), cache, backend=again)
    assert sum(len(b) for b in again.batches) == 7


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_generate import FakeBackend, prompts
    from deltalearn.generate.run import GenerateConfig, generate_tier
    from deltalearn.models import TierSpec

    class Slow(FakeBackend):
        def generate(self, convs, settings):
            time.sleep(0.4)
            return super().generate(convs, settings)

    generate_tier(TierSpec(name="fake", model="fake"), prompts(40), GenerateConfig(batch_size=4), sys.argv[1], backend=Slow())
    """
)


def test_sigkill_mid_run_keeps_finished_batches_and_rerun_completes(tmp_path):
    cache = tmp_path / "gen.jsonl"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=os.path.dirname(__file__)))
    proc = subprocess.Popen([sys.executable, str(script), str(cache)])
    deadline = time.time() + 60
    while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 8):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    survived = read_jsonl(cache, tolerate_torn_tail=True)
    assert 8 <= len(survived) < 40 and len(survived) % 4 == 0
    fresh = FakeBackend()
    res = generate_tier(TierSpec(name="fake", model="fake"), prompts(40), GenerateConfig(batch_size=4), cache, backend=fresh)
    assert sum(len(b) for b in fresh.batches) == 40 - len(survived)
    assert len(GenerationCache(cache).rows) == 40
    assert read_jsonl(cache)[: len(survived)] == survived  # earlier rows untouched
    assert len(res["records"]) == 40


def test_a_base_model_without_a_chat_template_gets_the_plain_form_everywhere(tiny_model_dir):
    from transformers import AutoTokenizer

    from deltalearn.chat import chat_ids, render_prompt
    from deltalearn.scoring.span import prompt_and_response

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    conv = [{"role": "user", "content": "What is the capital of France?"}]
    assert render_prompt(tok, conv) == tok.bos_token + "What is the capital of France?\n\n"
    prompt, response = prompt_and_response(tok, conv, [{"role": "assistant", "content": "Paris."}])
    assert prompt == tok(render_prompt(tok, conv), add_special_tokens=False)["input_ids"]  # what generation conditions on
    assert response[-1] == tok.eos_token_id and tok.decode(response[:-1]).strip() == "Paris."
    assert chat_ids(tok, conv, add_generation_prompt=True) == prompt
