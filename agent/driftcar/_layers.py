"""Option values from layers: defaults < YAML file < environment < flags, every problem at once.

One loader for every driftcar command that takes options (``driftcar sidecar``, ``driftcar profile``,
``driftcar report``): each describes its options as ``key -> parser`` and this module merges the
layers, parses each value once and collects every problem as ``(where, message)``, ``where``
naming the source (``config.yaml: window``, ``DRIFTCAR_WINDOW``, ``--window``) so a user fixes all of
them in one go. Leaf module: no driftcar imports, the YAML parser only when a file is read.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Iterable, Mapping, NamedTuple

__all__ = ["Setting", "Problems", "yaml_layer", "env_layer", "resolve"]

#: ``(where, message)`` pairs, in the order they were found
Problems = list


class Setting(NamedTuple):
    """One value as given: ``parsed`` ones (typed defaults, argparse-typed flags) are taken as they are."""

    value: Any
    where: str
    parsed: bool = False


_PARSE_ERRORS = (ValueError, TypeError, argparse.ArgumentTypeError)


def _flatten(data: Mapping, prefix: str, source: str, known: Mapping[str, Any], problems: Problems,
             out: dict[str, Setting], unknown: Callable[[str], str]) -> None:
    for raw_key, value in data.items():
        key = f"{prefix}{str(raw_key).replace('-', '_')}"
        if key in known:
            out[key] = Setting(value, f"{source}: {key}")
        elif isinstance(value, Mapping) and any(k.startswith(key + ".") for k in known):
            _flatten(value, key + ".", source, known, problems, out, unknown)
        else:
            problems.append(unknown(key))


def yaml_layer(path: str | None, known: Mapping[str, Any], problems: Problems, *,
               unknown: Callable[[str], tuple[str, str]] | None = None) -> dict[str, Setting]:
    """The options of a YAML map (nested maps for dotted keys, ``-`` read as ``_``); ``{}`` without a file."""
    if not path:
        return {}
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        problems.append((path, f"cannot read: {exc.strerror or exc}"))
        return {}
    except yaml.YAMLError as exc:
        problems.append((path, f"not valid YAML: {exc}"))
        return {}
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        problems.append((path, f"top level must be a map, got {type(data).__name__}"))
        return {}
    out: dict[str, Setting] = {}
    unknown = unknown or (lambda key: (f"{path}: {key}", "unknown key"))
    _flatten(data, "", path, known, problems, out, unknown)
    return out


def env_layer(env: Mapping[str, str], names: Mapping[str, str], prefix: str, problems: Problems, *,
              ignore: Callable[[str], bool] | None = None) -> dict[str, Setting]:
    """``names`` maps a variable to its option key. With ``ignore``, any other variable under ``prefix``
    that ``ignore`` does not claim is reported unknown; without it, others are left alone."""
    out: dict[str, Setting] = {}
    for name, value in env.items():
        if not name.startswith(prefix):
            continue
        key = names.get(name)
        if key is not None:
            out[key] = Setting(value, name)
        elif ignore is not None and not ignore(name):
            problems.append((name, "unknown environment variable"))
    return out


def resolve(parsers: Mapping[str, Callable[[Any], Any]], layers: Iterable[Mapping[str, Setting]],
            problems: Problems) -> tuple[dict[str, Any], dict[str, str]]:
    """Each key's value from the last layer that has it, parsed; ``(values, where)``.

    A key no layer has is left out; a value that does not parse is a problem, the key left out.
    """
    merged: dict[str, Setting] = {}
    for layer in layers:
        merged.update(layer)
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for key, parse in parsers.items():
        setting = merged.get(key)
        if setting is None:
            continue
        where[key] = setting.where
        if setting.parsed:
            values[key] = setting.value
            continue
        try:
            values[key] = parse(setting.value)
        except _PARSE_ERRORS as exc:
            problems.append((setting.where, str(exc)))
    return values, where
