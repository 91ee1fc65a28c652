"""Code answers: the code in a reply, the asserts a prompt states, and whether the code passes them
(run in the sandbox: deltalearn/sandbox.py). The MBPP suite and the `asserts` judge share this path."""

from __future__ import annotations

import re


def extract_code(response: str, prompt: str, entry_point: str) -> str:
    """The longest fenced block of the reply (or the reply), completed by the prompt when the reply
    continued a function's body only, with the prompt's imports when the reply dropped them."""
    blocks = re.findall(r"```(?:python|py)?\s*\n(.*?)```", response, re.DOTALL)
    code = max(blocks, key=len) if blocks else response
    if f"def {entry_point}" not in code:
        code = prompt + code  # the answer continued the body only
    elif "import" not in code and "import" in prompt:  # keep the problem's imports
        code = "\n".join(l for l in prompt.splitlines() if l.startswith(("import", "from"))) + "\n" + code
    return code


def entry_point(assert_line: str) -> str:
    """The function an assert calls first: `assert f(1) == 2` -> `f`."""
    return assert_line.split("assert ", 1)[-1].split("(", 1)[0].strip()


def stated_asserts(prompt: str) -> list[str]:
    """The assert lines a prompt states (an MBPP-style prompt shows one of its tests)."""
    return [line.strip() for line in prompt.splitlines() if line.strip().startswith("assert ")]


def run_asserts(answer: str, tests: list[str], *, setup: str = "", timeout: float = 10.0) -> tuple[bool, str]:
    """The reply's code, then every assert, as one program in the sandbox: (passed, why not)."""
    from ..sandbox import Limits, run_program

    code = extract_code(answer, "", entry_point(tests[0]))
    return run_program(setup + "\n" + code + "\n\n" + "\n".join(tests) + "\n", Limits(timeout=timeout))
