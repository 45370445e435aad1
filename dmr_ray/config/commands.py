"""How packages add their ``dmr-ray`` subcommands, and command-line options from dataclasses.

Each pipeline package has a ``cli.py`` with ``register(commands: CommandGroup)``;
:mod:`dmr_ray.cli` calls it. :meth:`CommandGroup.command` gives every command the shared
options (``-v``/``-q``), help that shows defaults and an example, and the line printed when
the command is interrupted (each command says what is kept). :func:`add_dataclass_options`
turns the fields of a dataclass (:class:`~dmr_ray.engine.EngineOptions`) into options with the
dataclass's own defaults and docstring, so the YAML section and the command line share them.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Handler = Callable[[argparse.Namespace], int]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (unless None, or the option is a flag) and keeps epilogs as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def shared_options(*, suppress: bool) -> argparse.ArgumentParser:
    """The options every command takes (``-v``, ``-q``), before or after its name.

    Parameters
    ----------
    suppress
        Leave them unset unless given (for subcommands, so a flag given before the
        subcommand is not reset by the subcommand's default).
    """
    parser = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else False
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")
    return parser


class CommandGroup:
    """A level of ``dmr-ray`` subcommands."""

    def __init__(self, subparsers: argparse._SubParsersAction) -> None:
        self._subparsers = subparsers

    def command(
        self,
        name: str,
        func: Handler,
        *,
        help: str,
        example: str,
        interrupted: str,
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        """Add the command ``name`` run by ``func``.

        Parameters
        ----------
        help, description
            One line for the parent's listing; the command's own description (default: ``help``).
        example
            Shown under "example:" at the end of ``--help``.
        interrupted
            What Ctrl-C leaves behind, printed as ``dmr-ray: interrupted; <interrupted>``.
        """
        parser = self._add(name, help, description, f"example:\n  {example}")
        parser.set_defaults(func=func, interrupted=interrupted)
        return parser

    def group(self, name: str, *, help: str) -> CommandGroup:
        """Add ``name`` holding subcommands of its own."""
        parser = self._add(name, help, None, None)
        return CommandGroup(parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND"))

    def _add(self, name: str, help: str, description: str | None, epilog: str | None) -> argparse.ArgumentParser:
        return self._subparsers.add_parser(
            name,
            help=help,
            description=description or help,
            epilog=epilog,
            parents=[shared_options(suppress=True)],
            formatter_class=HelpFormatter,
        )


def json_object(text: str) -> dict:
    """An argparse type: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def true_false_or(value: str) -> bool | str:
    """An argparse type: ``true``/``false`` as booleans, any other word as itself."""
    return {"true": True, "false": False}.get(value, value)


def field_docs(cls: type) -> dict[str, str]:
    """Per field, the first sentence of its entry in ``cls``'s numpy-style docstring."""
    docs: dict[str, str] = {}
    name = None
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        match = re.match(r"^(\w+)(\s*:.*)?$", line)
        if match and not line.startswith(" "):
            name = match.group(1)
            docs[name] = ""
        elif name and line.startswith(" "):
            docs[name] = f"{docs[name]} {line.strip()}".strip()
    return {key: _plain(re.split(r"\.\s+(?=[A-Z])", text)[0].rstrip(".")) for key, text in docs.items()}


def _plain(text: str) -> str:
    """Docstring markup as plain help text (roles and literals unwrapped, ``%`` escaped)."""
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"\1", text)
    return text.replace("``", "").replace("%", "%%")


def _argument_type(hint: Any) -> tuple[Callable[[str], Any], dict[str, Any]]:
    """The argparse ``type`` (and extra keywords) of a field's type hint."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _argument_type(args[0])
    if origin is typing.Literal:
        return str, {"choices": list(args)}
    if hint is bool or bool in args:
        return true_false_or, {"metavar": "{true,false}"}
    if hint in (int, float, str):
        return hint, {}
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        return json_object, {"metavar": "JSON"}
    raise TypeError(f"no command-line form for a field of type {hint!r}")


def add_dataclass_options(
    parser: argparse._ActionsContainer,
    cls: type,
    *,
    exclude: Iterable[str] = (),
    flags: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Add one option per field of the dataclass ``cls`` (``--field-name``), defaulting to the field's default.

    Parameters
    ----------
    parser
        A parser or argument group.
    cls
        A dataclass whose fields have defaults; the help comes from its docstring.
    exclude
        Fields not to add.
    flags
        Option strings replacing ``--field-name`` for some fields.
    overrides
        Extra ``add_argument`` keywords per field (e.g. ``choices``).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for spec in dataclasses.fields(cls):
        if spec.name in exclude:
            continue
        convert, extra = _argument_type(hints[spec.name])
        keywords = {"type": convert, "default": spec.default, "help": docs.get(spec.name, ""), **extra}
        keywords.update((overrides or {}).get(spec.name, {}))
        flag = (flags or {}).get(spec.name, "--" + spec.name.replace("_", "-"))
        parser.add_argument(flag, dest=spec.name, **keywords)


def dataclass_values(args: argparse.Namespace, cls: type, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The values of the options :func:`add_dataclass_options` added for ``cls``."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in exclude}
