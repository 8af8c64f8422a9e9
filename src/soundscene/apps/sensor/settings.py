"""A sensor's settings in a TOML file: ``soundscene listen --config sensor.toml``.

Every option of the command can be a key of the file, named as the option without its dashes and with
underscores (``level_interval = 30`` for ``--level-interval 30``, ``no_levels = true`` for ``--no-levels``,
``model = "model.safetensors"`` for the positional model).  The keys and their types come from the command's
argparse parser, so a new option is a new key with nothing to add here:

* an option of ``type=int`` takes a whole number; ``type=float`` any number; ``type=Path`` a string, a path
  relative to the file's folder; no type a string; a switch (``store_true``) true or false; ``choices``
  one of them; options that take several values an array;
* what the command line gives wins: the file fills only the options not given there (an option given with
  its default value counts as given, see :func:`options_given`).

Problems are reported together in one line (a :class:`~soundscene.errors.ConfigError` whose ``problems``
holds one line per unknown key or wrong value), each with its line in the file; a file that is not TOML is
one line with the line and column.

The listen command uses it as::

    given = options_given(parser, argv)             # the dests the command line set
    args = apply_config(listen_parser, args, given, args.config)
"""

from __future__ import annotations

import argparse
import copy
import difflib
import re
import tomllib
from pathlib import Path, PurePath
from typing import Any, Iterable, Mapping

from ...core.records import printable
from ...errors import ConfigError

_KEY_LINE = re.compile(r"""^\s*\[*\s*["']?([A-Za-z0-9_.-]+)["']?\s*(=|\])""")
_NOT_KEYS = ("config",)  # the option that names the file is not a key of it
_NOT_SETTINGS = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def config_options(parser: argparse.ArgumentParser, exclude: Iterable[str] = _NOT_KEYS) -> dict[str, argparse.Action]:
    """key -> argparse action, for every option of ``parser`` a config file may set (not help, version,
    sub-commands, nor ``exclude``): the first long option without dashes, ``-`` made ``_``; a positional's
    dest."""
    out = {}
    for action in parser._actions:
        if action.dest == argparse.SUPPRESS or isinstance(action, _NOT_SETTINGS):
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        key = longs[0][2:].replace("-", "_") if longs else action.dest
        if key not in exclude:
            out[key] = action
    return out


def options_given(parser: argparse.ArgumentParser, argv: Iterable[str]) -> set[str]:
    """The dests that ``argv`` sets on ``parser`` (and on its sub-commands): it is parsed again by a copy of
    the parser whose defaults are all ``argparse.SUPPRESS``, so only what the command line gave is there.
    Abbreviations (``--level-i``), ``--opt=value`` and a value equal to the default all count as given."""
    quiet = copy.deepcopy(parser)
    absent = object()
    dests = _suppress_defaults(quiet, absent)
    namespace, _ = quiet.parse_known_args(list(argv))
    return {dest for dest, value in vars(namespace).items() if dest in dests and value is not absent}


def _suppress_defaults(parser: argparse.ArgumentParser, absent: object) -> set[str]:
    """Make every default of ``parser`` and its sub-commands say "not given"; returns their dests.

    An optional gets ``SUPPRESS`` (left out of the namespace when absent).  A positional that may be absent
    (``nargs="?"`` or ``"*"``) is stored even then, and argparse would convert a ``SUPPRESS`` default with its
    type: it gets ``absent``, an object no converter or choice check sees."""
    dests = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                dests |= _suppress_defaults(sub, absent)
        elif action.dest != argparse.SUPPRESS and not isinstance(action, _NOT_SETTINGS):
            if action.option_strings:
                action.default = argparse.SUPPRESS
            else:
                action.default, action.choices = absent, None
            dests.add(action.dest)
    return dests


def subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of sub-command ``command`` (e.g. ``listen``) of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    raise KeyError(command)


def load_sensor_config(path: str | Path, options: argparse.ArgumentParser | Mapping[str, argparse.Action]
                       ) -> dict[str, Any]:
    """The settings of the TOML file at ``path`` as ``{dest: value}``, checked against ``options`` (a parser,
    or :func:`config_options`), values converted as the command line would (paths made relative to the
    file's folder).  Any problem raises one ConfigError listing them all."""
    path = Path(path)
    shown = printable(path)
    try:
        text = path.read_bytes().decode("utf-8")
        table = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"config file {shown}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {shown}: not UTF-8 text (TOML files are UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {shown}: not valid TOML: {exc}") from None
    if isinstance(options, argparse.ArgumentParser):
        options = config_options(options)
    lines = _key_lines(text)
    values, problems = {}, []
    for key, value in table.items():
        where = f"line {lines[key]}: " if key in lines else ""
        if key not in options:
            problems.append(f"{where}unknown key {printable(key)!r}{_suggestion(key, options)}")
            continue
        try:
            values[options[key].dest] = _converted(options[key], key, value, path.absolute().parent)
        except ValueError as exc:
            problems.append(f"{where}{exc}")
    if problems:
        error = ConfigError(f"config file {shown}: " + "; ".join(problems))
        error.problems = [f"config file {shown}: {p}" for p in problems]
        raise error
    return values


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv_given: Iterable[str],
                 config_path: str | Path | None) -> argparse.Namespace:
    """Fill ``args`` (parsed by ``parser``, the command's own parser) from the config file at ``config_path``
    for every option whose dest is not in ``argv_given`` (:func:`options_given`): the command line wins.
    Returns ``args`` (changed in place); no file (None) changes nothing."""
    if config_path is None:
        return args
    given = set(argv_given)
    for dest, value in load_sensor_config(config_path, parser).items():
        if dest not in given:
            setattr(args, dest, value)
    return args


def _suggestion(key: str, options: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (the keys are the command's options without dashes, e.g. {next(iter(options), 'rate')!r})"


def _key_lines(text: str) -> dict[str, int]:
    """top-level key (or table name) -> the line where the file first names it, for the messages."""
    found: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _KEY_LINE.match(line)
        if match:
            found.setdefault(match.group(1).split(".")[0], number)
    return found


def _converted(action: argparse.Action, key: str, value: Any, folder: Path) -> Any:
    """``value`` from the file as the command line would have made it for ``action``; ValueError says why not."""
    if action.nargs == 0:
        return _switch(action, key, value)
    if action.nargs in ("*", "+", argparse.REMAINDER) or isinstance(action.nargs, int) \
            or isinstance(action, argparse._AppendAction):
        if not isinstance(value, list):
            raise ValueError(f"{key} must be an array, got {_shown(value)}")
        return [_scalar(action, f"{key}[{k}]", v, folder) for k, v in enumerate(value)]
    return _scalar(action, key, value, folder)


def _switch(action: argparse.Action, key: str, value: Any) -> Any:
    """An option without a value: a count takes a whole number, a switch true or false."""
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a whole number >= 0, got {_shown(value)}")
        return value
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {_shown(value)}")
    if isinstance(action, argparse.BooleanOptionalAction):
        return value
    return action.const if value else action.default


def _scalar(action: argparse.Action, key: str, value: Any, folder: Path) -> Any:
    kind = action.type
    if isinstance(value, (dict, list)) or isinstance(value, bool):
        raise ValueError(f"{key} {_expected(kind)}, got {_shown(value)}")
    if kind is int:
        if not isinstance(value, int):
            raise ValueError(f"{key} {_expected(kind)}, got {_shown(value)}")
    elif kind is float:
        if not isinstance(value, (int, float)):
            raise ValueError(f"{key} {_expected(kind)}, got {_shown(value)}")
        value = float(value)
    elif kind is None or kind is str or (isinstance(kind, type) and issubclass(kind, PurePath)):
        if not isinstance(value, str):
            raise ValueError(f"{key} {_expected(kind)}, got {_shown(value)}")
        if kind is not None and kind is not str:
            value = kind(folder / Path(value).expanduser())
    else:  # another converter: given the text, as argparse would
        try:
            value = kind(value if isinstance(value, str) else str(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise ValueError(f"{key}: {_shown(value)} is not valid ({exc})") from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{key} must be one of {', '.join(map(str, action.choices))}, got {_shown(value)}")
    return value


def _expected(kind: Any) -> str:
    if kind is int:
        return "must be a whole number"
    if kind is float:
        return "must be a number"
    if isinstance(kind, type) and issubclass(kind, PurePath):
        return "must be a path (a string)"
    return "must be a string"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = printable(repr(value))
    return text if len(text) <= 40 else text[:37] + "..."
