"""The vLLM engine in its own process (run as a script, by path, with the Python of the venv that has
vLLM: it imports nothing of deltalearn). One JSON request per stdin line, one JSON reply per line on
the original stdout; everything vLLM prints goes to stderr.

Request: {"prompts": [[token ids], ...], "max_tokens", "temperature", "top_p", "seed", "stop_token_ids"}
Reply:   {"outputs": [{"token_ids": [...], "finish": "stop" | "length"}, ...]} or {"error": "..."}
The engine is built once from argv[1], a JSON of `vllm.LLM` keyword arguments.
"""

import json
import os
import sys


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints can no longer corrupt the reply stream
    from vllm import LLM, SamplingParams

    llm = LLM(**json.loads(sys.argv[1]))
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            params = SamplingParams(temperature=req["temperature"], top_p=req["top_p"], max_tokens=req["max_tokens"],
                                    seed=req["seed"], stop_token_ids=req["stop_token_ids"], skip_special_tokens=False)
            outs = llm.generate([{"prompt_token_ids": ids} for ids in req["prompts"]], params, use_tqdm=False)
            replies.write(json.dumps({"outputs": [
                {"token_ids": list(o.outputs[0].token_ids), "finish": "length" if o.outputs[0].finish_reason == "length" else "stop"}
                for o in outs]}) + "\n")
        except Exception as e:  # report, do not hang the parent
            replies.write(json.dumps({"error": f"{type(e).__name__}: {e}"[:2000]}) + "\n")


if __name__ == "__main__":  # vLLM's engine spawns processes: the guard is required
    main()
