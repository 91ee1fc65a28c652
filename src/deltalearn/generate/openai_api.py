"""Any OpenAI-compatible chat endpoint (vLLM server, llama.cpp server, hosted APIs).

The key comes from an environment variable named in the config and is never logged or written.
Retries with exponential backoff on timeouts, 429 and 5xx; a client-side rate limit.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict, Field

from ..errors import DeltaError
from ..io import fingerprint
from .base import Completion, GenerationSettings


class EndpointConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str = Field(description="The API's base URL, to which /chat/completions is appended (e.g. http://host:8000/v1).")
    model: str | None = Field(default=None, description="The model name the endpoint serves; null = the tier's `model`.")
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY", description="Environment variable that holds the API key (never logged); null = no key.")
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds to wait for one response.")
    max_retries: int = Field(default=4, ge=0, description="Retries after a timeout, a connection error, HTTP 429 or 5xx.")
    backoff_s: float = Field(default=1.0, ge=0, description="Seconds before the first retry, doubled for each later one.")
    requests_per_minute: float | None = Field(default=None, gt=0, description="Client-side rate limit; null = none.")
    concurrency: int = Field(default=4, ge=1, description="Requests in flight at once.")
    size: int | None = Field(default=None, description="Parameter count for the size heuristic, used when the tier declares no `size`.")


class EndpointError(DeltaError):
    pass


class OpenAIBackend:
    def __init__(self, cfg: EndpointConfig):
        if not cfg.model:
            raise DeltaError(f"endpoint {cfg.base_url}: no model name given")
        self.cfg = cfg
        self.model_id = cfg.model
        self.size = cfg.size
        self.fingerprint = fingerprint(["endpoint", cfg.base_url.rstrip("/"), cfg.model])
        self._key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(base_url={self.cfg.base_url!r}, model={self.cfg.model!r})"

    def prompt_length(self, conversation: list[dict]) -> int:
        return sum(len(m["content"]) for m in conversation)

    def generate(self, conversations: list[list[dict]], settings: GenerationSettings) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            return list(pool.map(lambda c: self._one(c, settings), conversations))

    def close(self) -> None:
        pass

    def _wait_for_slot(self) -> None:
        if not self.cfg.requests_per_minute:
            return
        interval = 60.0 / self.cfg.requests_per_minute
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_slot)
            self._next_slot = start + interval
        time.sleep(max(0.0, start - now))

    def _one(self, messages: list[dict], s: GenerationSettings) -> Completion:
        body = {
            "model": self.cfg.model,
            "messages": messages,
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        }
        data = self.request("/chat/completions", body)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            finish = "length" if choice.get("finish_reason") == "length" else "stop"
            n = int((data.get("usage") or {}).get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, ValueError):
            raise EndpointError(f"endpoint {self.cfg.base_url} model {self.cfg.model!r}: unexpected response shape") from None
        return Completion(text=text.strip(), n_tokens=n, finish_reason=finish)

    def request(self, route: str, body: dict) -> dict:
        url = self.cfg.base_url.rstrip("/") + route
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        payload = json.dumps(body).encode()
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            self._wait_for_slot()
            req = urllib.request.Request(url, data=payload, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if e.code != 429 and e.code < 500:
                    break  # a client error will not fix itself
            except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                last = "timed out" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else f"{reason}"
            except json.JSONDecodeError:
                last = "response is not JSON"
        raise EndpointError(
            f"endpoint {self.cfg.base_url} model {self.cfg.model!r}: {last} after {attempt + 1} attempt(s)"
        )
