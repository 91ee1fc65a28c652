"""HumanEval with execution: the answer's code plus the problem's tests run in the sandbox
(evaluate/sandbox.py: namespaces, a user of its own, rlimits, a fresh directory, no network)."""

from __future__ import annotations

import re

INSTRUCTION = ("Complete the following Python function. Reply with the complete function in one "
               "```python code block.\n\n```python\n{prompt}```")


def extract_code(response: str, prompt: str, entry_point: str) -> str:
    blocks = re.findall(r"```(?:python|py)?\s*\n(.*?)```", response, re.DOTALL)
    code = max(blocks, key=len) if blocks else response
    if f"def {entry_point}" not in code:
        code = prompt + code  # the answer continued the body only
    elif "import" not in code and "import" in prompt:  # keep the problem's imports
        code = "\n".join(l for l in prompt.splitlines() if l.startswith(("import", "from"))) + "\n" + code
    return code


def run_tests(code: str, test: str, entry_point: str, timeout: float = 10.0) -> tuple[bool, str]:
    """Run the answer's code and the problem's tests in the sandbox (evaluate/sandbox.py)."""
    from .sandbox import Limits, run_program

    return run_program(code + "\n\n" + test + f"\n\ncheck({entry_point})\n", Limits(timeout=timeout))
