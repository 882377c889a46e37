"""The renderer: well-formed SVG whose bars are proportional to the shares, text verdicts
beside colour, escaped names, nothing referenced outside the document."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from driftcar.view.render import render_body, render_page
from driftcar.view.svg import MAX_CATEGORIES, distribution_chart, history_chart

NS = {"s": "http://www.w3.org/2000/svg"}


def _bars(svg: str, colour: str) -> list[float]:
    root = ET.fromstring(svg)
    return [float(r.get("height")) for r in root.iter("{http://www.w3.org/2000/svg}rect")
            if r.get("fill") == colour and r.get("height") is not None and float(r.get("y", 0)) > 20]


def test_numeric_bars_are_proportional_to_the_shares():
    dist = {"kind": "numeric", "edges": [-1.0, 0.0, 1.0], "labels": None,
            "reference": [25, 25, 25, 25, 0], "current": [10, 20, 30, 30, 10]}
    svg = distribution_chart(dist)
    ref, cur = _bars(svg, "#9aa5b1"), _bars(svg, "#1f6fb2")
    assert len(ref) == len(cur) == 5
    shares = [c / 100 for c in dist["current"]]
    for height, share in zip(cur, shares):
        assert height == pytest.approx(cur[2] * share / 0.3, abs=0.11)  # the tallest is the 30% bar
    assert ref[0] == pytest.approx(cur[2] * 0.25 / 0.3, abs=0.11) and ref[4] == 0
    assert "missing" in svg and "#c0392b" in distribution_chart(dist, drifted=True)


def test_many_categories_are_folded_but_other_and_missing_stay():
    labels = [f"c{i}" for i in range(40)] + ["__other__", "(missing)"]
    dist = {"kind": "categorical", "edges": None, "labels": labels,
            "reference": list(range(40)) + [5, 1], "current": list(range(40)) + [9, 3]}
    svg = distribution_chart(dist)
    ET.fromstring(svg)
    assert f"{40 - MAX_CATEGORIES} more" in svg and "__other__" in svg and "(missing)" in svg
    assert "c39" in svg and "c0<" not in svg  # the largest kept, the smallest folded


def test_history_marks_drifted_windows_and_the_threshold():
    points = [{"level": 0.2, "detected": False, "method": "ks", "pvalue": 0.5, "threshold": 0.05},
              {"level": 3.0, "detected": True, "method": "wasserstein", "score": 0.3, "threshold": 0.1},
              {"level": None, "detected": False, "ok": False}]
    svg = history_chart(points, "ks")
    root = ET.fromstring(svg)
    circles = list(root.iter("{http://www.w3.org/2000/svg}circle"))
    assert [c.get("class") for c in circles] == ["pt", "pt hit"]
    threshold_y = float(re.search(r'class="threshold"', svg) and re.search(
        r'<line x1="\d+" y1="([\d.]+)"[^>]*class="threshold"', svg).group(1))
    assert float(circles[1].get("cy")) < threshold_y < float(circles[0].get("cy"))  # drift above the line


def _doc(name="x", verdict=True):
    feature = {"name": name, "kind": "numeric", "method": "ks", "rule": "p-value", "score": 0.3, "threshold": 0.05,
               "pvalue": 1e-9, "verdict": verdict, "detected": verdict, "ok": True, "since_unix_nano": None,
               "since_window": 2, "n_reference": 10, "n_current": 10, "history": [],
               "distribution": {"kind": "numeric", "edges": [0.0], "labels": None, "reference": [5, 5, 0],
                                "current": [1, 9, 0]}}
    model = {"name": "m<b>", "version": "1", "reference": None, "rows_total": 10, "windows_kept": 1,
             "window_seconds": None, "last_window": None, "golden": None, "quality": {"accuracy": 0.9},
             "estimated_accuracy": None, "drifted": [name] if verdict else [], "features": [feature]}
    return {"title": "t", "kind": "report", "generated_unix_nano": 0, "models": [model], "events": [], "notes": []}


def test_page_is_self_contained_and_escapes_names():
    html = render_page(_doc(name='<script>alert("x")</script>'))
    assert "<script>alert" not in html and "&lt;script&gt;" in html and "m&lt;b&gt;" in html
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html)
    assert html.count("<script>") == 1  # the page's own, inlined
    assert "DRIFTED" in html and "window 2" in html and "accuracy" in html


def test_verdicts_are_text_not_only_colour():
    drifted, ok = render_body(_doc(verdict=True)), render_body(_doc(verdict=False))
    assert 'data-verdict="drifted"' in drifted and "DRIFTED" in drifted
    assert 'data-verdict="ok"' in ok and "✓ ok" in ok and "DRIFTED" not in ok
