"""One exception type whose message is the whole, one-line story for a person."""


class DeltaError(Exception):
    """A user-facing error. The CLI prints `deltalearn: <message>` and exits 2."""


def where(path, row: int | None = None, field: str | None = None) -> str:
    """Format a location as `file line N: field "x"` for error messages."""
    out = str(path)
    if row is not None:
        out += f" line {row}"
    if field is not None:
        out += f': field "{field}"'
    return out


class RecipeErrors(ValueError):
    """Several problems found by one validator, each at its own key path, all reported at once.
    Raised inside pydantic validators; `config.validate` lists them as `file: key "a.b": message`."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors  # (dotted key relative to the model being validated, message)
        super().__init__("; ".join(f"{k}: {m}" if k else m for k, m in errors))
