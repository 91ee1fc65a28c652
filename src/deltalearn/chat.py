"""The one chat-template renderer: every stage renders and tokenises conversations through here."""

from __future__ import annotations


def user_turn(text: str) -> list[dict]:
    """The paper's generation input: one user turn and no system prompt of ours."""
    return [{"role": "user", "content": text}]


def assistant_turn(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def chat_ids(tokenizer, messages: list[dict], *, add_generation_prompt: bool = False) -> list[int]:
    """Token ids of a conversation as the model's own template renders them (TRL tokenises the same way).
    A base model without a template gets the plain form `render_prompt` generates from, with EOS after
    an assistant turn."""
    if not getattr(tokenizer, "chat_template", None):
        text = "\n\n".join(m["content"] for m in messages) + ("\n\n" if add_generation_prompt or messages[-1]["role"] != "assistant" else "")
        ids = ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids + ([tokenizer.eos_token_id] if messages[-1]["role"] == "assistant" and tokenizer.eos_token_id is not None else [])
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"])


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The exact text the model is conditioned on, with the model's own template as shipped."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # A base model without a template: plain text, turns separated by blank lines, after its BOS.
    return (tokenizer.bos_token or "") + "\n\n".join(m["content"] for m in messages) + "\n\n"
