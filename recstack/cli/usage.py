"""How every `recstack` command shows its help and its usage errors, at any width.

Typer's rich help keeps a docstring's hard line breaks, so at 80 columns a summary
breaks mid-sentence, and it labels every option with a Python type (`--help <bool>`,
`<str>`); a usage error is a five-line box. These classes unwrap each paragraph (rich
wraps it to the terminal), label only options that take a value, and print a usage
error as one line that names the option and, for a number, its allowed range.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from recstack.cli.console import fail

# Typer's type labels, as click users know them.
_LABELS = {"str": "TEXT", "int": "INTEGER", "int range": "INTEGER", "float": "NUMBER",
           "float range": "NUMBER", "path": "PATH", "list[str]": "TEXT", "bool": ""}


def unwrap(text: str | None) -> str | None:
    """Each paragraph on one line; paragraphs stay apart."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _no_type(ctx: typer.Context) -> None:
    return None


def _label(param: Any, ctx: typer.Context) -> None:
    """A metavar in place of Typer's `<type>`: none for a flag; an argument is named
    by its metavar alone (FILE), without a type beside it."""
    if param.param_type_name == "argument":
        param.metavar = param.metavar or str(param.name).upper()
        param.display_type_rich = _no_type
        return
    if param.metavar is not None:
        return
    if getattr(param, "is_flag", False):
        param.metavar = ""
        return
    shown = str(param.display_type(ctx)).strip("<>")
    param.metavar = _LABELS.get(shown, shown.upper() if shown.isidentifier()
                                else f"[{shown}]")


def allowed_range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low} to {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


def _given(exc: BaseException) -> Any:
    """The value the user typed, from the pydantic error Typer raised from."""
    errors = getattr(exc.__cause__, "errors", None)
    found = errors() if callable(errors) else []
    return found[0].get("input") if found else None


def one_line(exc: typer.TyperException) -> str:
    """A usage error as one line; a number out of range says what is allowed."""
    param = getattr(exc, "param", None)
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    name = (param.opts[0] if param is not None and param.opts else
            getattr(param, "name", None))
    message = exc.format_message()
    if name and (low is not None or high is not None) and re.search(
            r"(greater|less) than", message):
        given = _given(exc)
        return f"{name} must be {allowed_range(low, high)}" + (
            f", got {given}" if given is not None else "")
    invalid = re.match(r"Invalid value for '[^']*'(?: / '[^']*')*: (Value error, )?(.*)",
                       message, re.S)  # an option with two names lists both
    if name and invalid:
        return f"{name}: {invalid.group(2).rstrip('.')}"
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return message.rstrip(".") + hint


@contextmanager
def _usage_errors_as_one_line() -> Iterator[None]:
    try:
        yield
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is the answer
            raise
        fail(one_line(exc), int(getattr(exc, "exit_code", 2)))


class _Readable:
    """Help text unwrapped, and options labelled, for commands and groups alike."""

    help: str | None
    short_help: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = unwrap(self.help)
        self.short_help = unwrap(self.short_help)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            _label(param, ctx)
        super().format_help(ctx, formatter)  # type: ignore[misc]


class Command(_Readable, TyperCommand):
    pass


class Group(_Readable, TyperGroup):
    """The same for groups; the root group also turns every usage error below it
    (its own, a subcommand's parsing, a callback's) into one line."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        with _usage_errors_as_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors_as_one_line():
            return super().invoke(ctx)


class App(typer.Typer):
    """A Typer whose groups and commands are the classes above."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=Group, add_completion=False, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)
