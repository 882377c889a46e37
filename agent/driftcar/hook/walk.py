"""Find the inner estimators of a model, without importing scikit-learn or river.

Recognised by shape (duck typing), so the hook's import stays light:

- scikit-learn ``Pipeline.steps`` and ``FeatureUnion.transformer_list``: lists of
  ``(name, estimator)``; ``ColumnTransformer.transformers`` and, once fitted,
  ``transformers_`` (the fitted clones): lists of ``(name, estimator, columns)``.
  ``"drop"`` / ``"passthrough"`` entries are skipped.
- river ``compose.Pipeline.steps`` and ``TransformerUnion.transformers``: dicts
  name -> estimator.
- user-configured wrapper attributes, opt-in per class:
  ``{RandomForestClassifier: ["estimators_"]}`` (an estimator, or a list / tuple /
  dict / object array of them), so a forest does not make a span per tree
  unless asked.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

__all__ = ["children", "walk"]

_CONTAINER_ATTRS = ("steps", "transformer_list", "transformers", "transformers_")


def _safe_getattr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # properties of unfitted estimators may raise anything
        return None


def _is_estimator(value: Any) -> bool:
    return value is not None and not isinstance(value, (str, bytes, int, float, bool, list, tuple, dict)) and hasattr(value, "__dict__")


def _from_container(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for v in value.values():
            if _is_estimator(v):
                yield v
    elif isinstance(value, (list, tuple)):
        for entry in value:
            if isinstance(entry, tuple) and len(entry) >= 2 and isinstance(entry[0], str):
                if _is_estimator(entry[1]):
                    yield entry[1]


def _from_any(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        yield from (v for v in value.values() if _is_estimator(v))
    elif isinstance(value, (list, tuple)) or (hasattr(value, "dtype") and getattr(value, "dtype", None) == object):
        for v in list(value.ravel() if hasattr(value, "ravel") else value):
            if isinstance(v, tuple) and len(v) >= 2 and isinstance(v[0], str):
                v = v[1]
            if _is_estimator(v):
                yield v
    elif _is_estimator(value):
        yield value


def children(obj: Any, wrappers: Mapping[type, Sequence[str]]) -> Iterator[Any]:
    """Direct inner estimators of ``obj`` (see the module docstring)."""
    for attr in _CONTAINER_ATTRS:
        yield from _from_container(_safe_getattr(obj, attr))
    for cls, attrs in wrappers.items():
        if isinstance(obj, cls):
            for attr in attrs:
                yield from _from_any(_safe_getattr(obj, attr))


def walk(root: Any, wrappers: Mapping[type, Sequence[str]]) -> list[Any]:
    """All inner estimators under ``root`` (depth first, each once; root excluded)."""
    seen = {id(root)}
    out: list[Any] = []
    stack = list(children(root, wrappers))[::-1]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(obj)
        stack.extend(list(children(obj, wrappers))[::-1])
    return out
