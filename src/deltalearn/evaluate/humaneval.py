"""HumanEval with execution: the answer's code plus the problem's tests run in the sandbox
(deltalearn/sandbox.py: namespaces, a user of its own, rlimits, a fresh directory, no network)."""

from __future__ import annotations

INSTRUCTION = ("Complete the following Python function. Reply with the complete function in one "
               "```python code block.\n\n```python\n{prompt}```")


def run_tests(code: str, test: str, entry_point: str, timeout: float = 10.0) -> tuple[bool, str]:
    """Run the answer's code and the problem's tests in the sandbox (deltalearn/sandbox.py)."""
    from ..sandbox import Limits, run_program

    return run_program(code + "\n\n" + test + f"\n\ncheck({entry_point})\n", Limits(timeout=timeout))
