"""driftcar.instrument with an in-memory shipper: what is captured equals what the model saw and said."""

from __future__ import annotations

import copy
import math
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import driftcar
from driftcar.hook import monitor as monitor_module
from driftcar.hook.wrappers import Unwrapped, Wrapper
from tests.unit.hook.fakes import FakeShipper, OfferOnlyShipper


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n)
    age[::7] = np.nan
    city = rng.choice(["Paris", "Lyon", "Nice"], n).astype(object)
    city[::5] = None
    return pd.DataFrame({"age": age, "income": rng.normal(3000, 500, n), "city": city})


def churn_pipeline() -> tuple[Pipeline, pd.DataFrame, np.ndarray]:
    """Pipeline(ColumnTransformer on a frame with a string column and NaNs, LogisticRegression)."""
    X = _frame(200)
    y = (X["income"] > 3000).to_numpy().astype(int)
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"), OneHotEncoder(handle_unknown="ignore")), ["city"]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(X, y), X, y


def _same(a, b) -> bool:
    a = a.tolist() if isinstance(a, np.ndarray) else list(a)
    b = b.tolist() if isinstance(b, np.ndarray) else list(b)
    return len(a) == len(b) and all(
        x == y or (x is None and y is None) or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b)
    )


def _col(part, name):
    return next(c for c in part.columns if c.name == name)


def _spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


# --------------------------------------------------------------------------- the four model kinds


def test_pipeline_on_dataframe_captures_exactly_what_it_saw_and_said():
    pipe, X, _ = churn_pipeline()
    shipper = FakeShipper()
    driftcar.instrument(pipe, name="churn", version="3", shipper=shipper)
    batch = X.iloc[:17]
    labels = pipe.predict(batch)
    proba = pipe.predict_proba(batch)
    parts = shipper.parts("inference")
    predict, predict_proba = parts
    for part in parts:
        assert part.rows == 17
        assert [c.name for c in part.columns if c.role == "feature"] == ["age", "income", "city"]
        assert _same(_col(part, "age").data, batch["age"].to_numpy())
        assert _same(_col(part, "income").data, batch["income"].to_numpy())
        assert _col(part, "city").data == [None if pd.isna(v) else v for v in batch["city"]]
    assert _col(predict, "prediction").data.tolist() == labels.tolist()
    assert predict.calls["method"] == ["predict"]
    assert [c.name for c in predict_proba.columns if c.role == "probability"] == ["proba[0]", "proba[1]"]
    assert [c.cls for c in predict_proba.columns if c.role == "probability"] == ["0", "1"]
    assert _col(predict_proba, "proba[1]").data.tolist() == proba[:, 1].tolist()
    assert predict_proba.calls["rows"].tolist() == [17]


def test_numpy_model():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 4))
    model = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0, 4.0])
    shipper = FakeShipper()
    driftcar.instrument(model, name="reg", shipper=shipper)
    out = model.predict(X[:5])
    part = shipper.part()
    assert [c.name for c in part.columns] == ["x0", "x1", "x2", "x3", "prediction"]
    for j in range(4):
        assert _col(part, f"x{j}").data.tolist() == X[:5, j].tolist()
    assert _col(part, "prediction").data.tolist() == out.tolist()


def test_river_model_rows_predictions_probabilities_and_labels():
    from river import linear_model, preprocessing

    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    shipper = FakeShipper()
    driftcar.instrument(model, name="river", shipper=shipper)
    rng = np.random.default_rng(2)
    rows = [{"a": float(rng.normal()), "b": float(rng.normal())} for _ in range(20)]
    for x in rows:
        model.learn_one(x, x["a"] > 0)
    said = model.predict_one(rows[0])
    proba = model.predict_proba_one(rows[1])
    parts = {p.calls["method"][0]: p for p in shipper.parts("inference")}
    learn = parts["learn_one"]
    assert learn.rows == 20 and learn.calls["method"] == ["learn_one"] * 20
    assert _col(learn, "a").data.tolist() == [x["a"] for x in rows]
    assert _col(learn, "label").data.tolist() == [x["a"] > 0 for x in rows]
    assert _col(parts["predict_one"], "prediction").data.tolist() == [said]
    assert _col(parts["predict_one"], "b").data.tolist() == [rows[0]["b"]]
    assert _col(parts["predict_proba_one"], "proba[True]").data.tolist() == [proba[True]]
    assert _col(parts["predict_proba_one"], "proba[False]").data.tolist() == [proba[False]]


def test_plain_function_monitor_is_the_callable():
    def score(X):
        return X.sum(axis=1)

    shipper = FakeShipper()
    monitor = driftcar.instrument(score, name="score", shipper=shipper)
    X = np.arange(6.0).reshape(3, 2)
    assert monitor.model is monitor.wrapped and monitor.original is score
    assert monitor(X).tolist() == [1.0, 5.0, 9.0]
    assert monitor.model(X[:1]).tolist() == [1.0]
    part = shipper.part()
    assert part.rows == 4 and part.calls["method"] == ["__call__", "__call__"]
    assert _col(part, "x1").data.tolist() == [1.0, 3.0, 5.0, 1.0]
    assert _col(part, "prediction").data.tolist() == [1.0, 5.0, 9.0, 1.0]
    assert driftcar.instrument(score, shipper=shipper) is monitor


# --------------------------------------------------------------------------- outcomes, sampling, ids, labels, reference


def test_exception_is_reraised_unchanged_and_counted_by_type():
    class Boom(RuntimeError):
        pass

    error = Boom("no")

    def model(X):
        raise error

    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="boom", shipper=shipper)
    with pytest.raises(Boom) as info:
        monitor(np.ones((3, 2)))
    assert info.value is error
    part = shipper.part()
    assert part.rows == 0
    assert part.calls["error_type"] == ["Boom"] and part.calls["rows"].tolist() == [3]
    assert monitor.stats["errors"] == {"Boom": 1} and monitor.stats["calls"] == 1


def test_sampling_keeps_every_call_and_about_rate_of_rows():
    shipper = FakeShipper()
    monitor = driftcar.instrument(lambda X: X, name="id", sample=0.25, shipper=shipper)
    for _ in range(2000):
        monitor(np.ones((1, 1)))
    part = shipper.part()
    assert len(part.calls["method"]) == 2000
    # Binomial(2000, 0.25): mean 500, sd 19.4; 5 sd either side
    assert 403 <= part.rows <= 597
    assert part.calls["captured"].sum() == part.rows


def test_sample_zero_captures_no_rows():
    shipper = FakeShipper()
    monitor = driftcar.instrument(lambda X: X, name="none", sample=0.0, shipper=shipper)
    monitor(np.ones((4, 1)))
    part = shipper.part()
    assert part.rows == 0 and part.calls["rows"].tolist() == [4]


def test_ids_and_log_labels():
    model = LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0])
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="m", shipper=shipper)
    with monitor.ids(["a", "b"]):
        model.predict(np.eye(3)[:2])
        model.predict(np.eye(3))  # 3 rows for 2 ids: captured without ids, counted
    model.predict(np.eye(3)[:1])  # outside the block: no ids
    monitor.log_labels(["b", "a"], [2.0, 1.0])
    with_ids = [p for p in shipper.parts("inference") if any(c.name == "id" for c in p.columns)]
    assert len(with_ids) == 1 and _col(with_ids[0], "id").data == ["a", "b"]
    labels = shipper.part("labels")
    assert _col(labels, "id").data == ["b", "a"] and _col(labels, "label").data.tolist() == [2.0, 1.0]
    assert monitor.stats["id_mismatches"] == 1
    with pytest.raises(ValueError, match="2 ids but 1 labels"):
        monitor.log_labels(["x", "y"], [1])


def test_river_ids_with_learn_one_emit_labels_for_the_join():
    from river import linear_model

    model = linear_model.LogisticRegression()
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="r", shipper=shipper)
    with monitor.ids("req-7"):
        model.predict_one({"a": 1.0})
        model.learn_one({"a": 1.0}, True)
    labels = shipper.part("labels")
    assert _col(labels, "id").data == ["req-7"] and _col(labels, "label").data.tolist() == [True]


def test_set_reference_sends_reference_batches_in_chunks(monkeypatch):
    monkeypatch.setattr(monitor_module, "REFERENCE_CHUNK_ROWS", 40)
    _, X, y = churn_pipeline()
    shipper = FakeShipper()
    monitor = driftcar.instrument(lambda X: X, name="ref", shipper=shipper)
    assert monitor.set_reference(X.iloc[:100], y[:100]) == 100
    assert [i.rows for i in shipper.items] == [40, 40, 20]
    part = shipper.part("reference")
    assert part.rows == 100 and part.calls is None
    assert _same(_col(part, "age").data, X["age"].to_numpy()[:100])
    assert _col(part, "label").data.tolist() == y[:100].tolist()
    with pytest.raises(ValueError, match="y has 3 values, X has 100 rows"):
        monitor.set_reference(X.iloc[:100], y[:3])


def test_captured_inputs_are_copies():
    shipper = FakeShipper()
    monitor = driftcar.instrument(lambda X: X * 2, name="copy", shipper=shipper)
    X = np.ones((2, 2))
    monitor(X)
    X[:] = 7.0
    assert _col(shipper.part(), "x0").data.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("shipper_class", [FakeShipper, OfferOnlyShipper])
def test_numpy_fast_path_snapshots_and_falls_back_for_object_arrays(shipper_class):
    """numpy in/out goes through the compact offer_raw form when the shipper has it, else offer();
    either way later mutation of the caller's arrays (input and returned output) changes nothing."""
    shipper = shipper_class()
    labels = np.array(["no", "yes"], dtype=object)
    monitor = driftcar.instrument(lambda X: X[:, 0] * 2, name="fast", shipper=shipper)
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = monitor(X)
    X[:] = -1.0
    out[:] = -1.0
    strings = driftcar.instrument(lambda X: labels[(X[:, 0] > 2).astype(int)], name="obj", shipper=shipper)
    said = strings(np.arange(6.0).reshape(3, 2))
    assert shipper.raw == (1 if shipper_class is FakeShipper else 0)  # object outputs never take it
    first, second = shipper.items
    assert first.inputs.dtype == np.float32 and first.inputs.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert first.outputs.tolist() == [0, 4, 8] and first.rows == 3 and first.method == "__call__"
    assert first.duration_s > 0 and first.size_hint >= 3 * 2 * 4 + 3 * 4
    assert second.outputs.dtype == object and second.outputs.tolist() == said.tolist() == ["no", "no", "yes"]
    assert monitor.stats["captured_rows"] == 3 and monitor.stats["calls"] == 1


def test_captured_frames_and_dict_rows_are_snapshots():
    shipper = FakeShipper()
    monitor = driftcar.instrument(lambda X: np.zeros(len(X)), name="snap", shipper=shipper)
    frame = pd.DataFrame({"a": [1.0, 2.0], "s": ["x", "y"]})
    rows = [{"a": 1.0}, {"a": 2.0}]
    monitor(frame)
    monitor(rows)
    frame.loc[0, "a"] = 99.0
    frame.loc[1, "s"] = "changed"
    rows[0]["a"] = 99.0
    rows.append({"a": 3.0})
    from_frame, from_rows = shipper.parts()  # two layouts: (a, s) and (a)
    assert _col(from_frame, "a").data.tolist() == [1.0, 2.0]
    assert _col(from_frame, "s").data == ["x", "y"]
    assert _col(from_rows, "a").data.tolist() == [1.0, 2.0] and from_rows.rows == 2


def test_a_failing_shipper_never_reaches_the_model():
    class Broken(FakeShipper):
        def offer(self, captured):
            raise OSError("disk on fire")

        def offer_raw(self, raw, rows, nbytes):
            raise OSError("disk on fire")

    monitor = driftcar.instrument(lambda X: X + 1, name="b", shipper=Broken())
    assert monitor(np.zeros((1, 1))).tolist() == [[1.0]]  # the compact path
    assert monitor(np.zeros((1, 1), dtype=object)).tolist() == [[1]]  # the Captured path
    assert monitor.stats["capture_failures"] == 2


# --------------------------------------------------------------------------- spans


def test_span_tree_and_trace_id_in_calls_table():
    pipe, X, _ = churn_pipeline()
    provider, exporter = _spans()
    shipper = FakeShipper()
    driftcar.instrument(pipe, name="churn", shipper=shipper, tracer_provider=provider)
    pipe.predict(X.iloc[:3])
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    root = by_name["Pipeline.predict"]
    assert root.parent is None
    assert root.attributes["model.name"] == "churn"
    assert by_name["ColumnTransformer.transform"].parent.span_id == root.context.span_id
    assert by_name["LogisticRegression.predict"].parent.span_id == root.context.span_id
    # fitted clones inside the ColumnTransformer are traced too, as grandchildren
    scaler = by_name["StandardScaler.transform"]
    chain = {s.context.span_id: s for s in spans}
    parent = chain[scaler.parent.span_id]
    assert parent.name == "Pipeline.transform" and chain[parent.parent.span_id].name == "ColumnTransformer.transform"
    assert shipper.part().calls["trace_id"] == [format(root.context.trace_id, "032x")]


def test_span_records_the_exception():
    provider, exporter = _spans()
    model = LogisticRegression()
    driftcar.instrument(model, name="unfitted", shipper=FakeShipper(), tracer_provider=provider)
    with pytest.raises(Exception) as info:
        model.predict(np.ones((1, 2)))
    [span] = exporter.get_finished_spans()
    assert span.name == "LogisticRegression.predict"
    assert span.status.status_code == StatusCode.ERROR
    assert span.events[0].name == "exception"
    assert span.events[0].attributes["exception.type"].endswith(type(info.value).__name__)
    assert span.events[0].attributes["exception.message"] == str(info.value)


def test_wrapper_attributes_are_opt_in():
    X = np.random.default_rng(3).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    provider, exporter = _spans()
    plain = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    driftcar.instrument(plain, name="rf", shipper=FakeShipper(), tracer_provider=provider)
    plain.predict(X[:2])
    assert {s.name for s in exporter.get_finished_spans()} == {"RandomForestClassifier.predict", "RandomForestClassifier.predict_proba"}
    exporter.clear()
    deep = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    shipper = FakeShipper()
    driftcar.instrument(deep, name="rf2", shipper=shipper, tracer_provider=provider, wrappers={RandomForestClassifier: ["estimators_"]})
    deep.predict(X[:2])
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("DecisionTreeClassifier.predict_proba") == 3
    # predict calls predict_proba on itself: one outermost call, one captured row set
    assert shipper.part().calls["method"] == ["predict"]


def test_spans_off_leaves_inner_steps_alone():
    pipe, X, _ = churn_pipeline()
    driftcar.instrument(pipe, name="nospans", shipper=FakeShipper(), spans=False)
    assert isinstance(vars(pipe)["predict"], Wrapper)
    assert "transform" not in vars(pipe.named_steps["pre"])


# --------------------------------------------------------------------------- lifecycle


def test_no_double_wrap_and_other_instances_untouched():
    pipe, X, _ = churn_pipeline()
    other, _, _ = churn_pipeline()
    shipper = FakeShipper()
    first = driftcar.instrument(pipe, name="churn", shipper=shipper)
    assert driftcar.instrument(pipe, name="churn", shipper=FakeShipper()) is first
    assert not isinstance(vars(pipe)["predict"].orig, Wrapper)
    pipe.predict(X.iloc[:2])
    assert shipper.part().calls["method"] == ["predict"]
    assert "predict" not in vars(other)
    assert "transform" not in vars(other.named_steps["pre"])


def test_instrumenting_again_under_another_name_warns(caplog):
    model = LinearRegression().fit(np.eye(2), [0.0, 1.0])
    first = driftcar.instrument(model, name="a", shipper=FakeShipper())
    with caplog.at_level("WARNING", logger="driftcar.hook"):
        assert driftcar.instrument(model, name="b") is first
    assert "already instrumented as a/unknown" in caplog.text


def test_uninstrument_restores_originals():
    pipe, X, _ = churn_pipeline()
    shipper = FakeShipper()
    driftcar.instrument(pipe, name="churn", shipper=shipper)
    assert driftcar.uninstrument(pipe) is pipe
    assert not any(isinstance(v, Wrapper) for v in vars(pipe).values())
    for name, step in pipe.named_steps.items():
        assert not any(isinstance(v, Wrapper) for v in vars(step).values()), name
    pipe.predict(X.iloc[:2])
    assert shipper.items == []
    assert not shipper.closed  # an injected shipper belongs to the caller


def test_pickle_and_deepcopy_give_a_working_uninstrumented_model():
    pipe, X, _ = churn_pipeline()
    expected = pipe.predict_proba(X.iloc[:5])
    shipper = FakeShipper()
    driftcar.instrument(pipe, name="churn", shipper=shipper)
    for restored in (pickle.loads(pickle.dumps(pipe)), copy.deepcopy(pipe)):
        assert np.array_equal(restored.predict_proba(X.iloc[:5]), expected)
        assert not any(isinstance(v, Wrapper) for v in vars(restored).values())
        assert "predict_proba" not in vars(restored)  # the placeholder removed itself
        driftcar.uninstrument(restored)
        assert not any(isinstance(v, Unwrapped) for v in vars(restored).values())
    assert shipper.items == []
    pipe.predict(X.iloc[:1])
    assert len(shipper.items) == 1  # the original is still instrumented


def test_clone_is_a_fresh_uninstrumented_estimator():
    pipe, X, y = churn_pipeline()
    driftcar.instrument(pipe, name="churn", shipper=FakeShipper())
    twin = clone(pipe)
    assert "predict" not in vars(twin)
    assert twin.get_params()["clf__C"] == pipe.get_params()["clf__C"]
    assert twin.fit(X, y).predict(X.iloc[:3]).tolist() == pipe.predict(X.iloc[:3]).tolist()


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="sample must be a number in"):
        driftcar.instrument(lambda x: x, name="f", sample=1.5, shipper=FakeShipper())
    with pytest.raises(ValueError, match="protocol must be one of"):
        driftcar.instrument(lambda x: x, name="f", protocol="udp", shipper=FakeShipper())
    with pytest.raises(TypeError, match="is not callable"):
        driftcar.instrument(42, name="n", shipper=FakeShipper())
    with pytest.raises(TypeError, match="not the class"):
        driftcar.instrument(LogisticRegression, shipper=FakeShipper())
    with pytest.raises(TypeError, match="need the default shipper"):
        driftcar.instrument(lambda x: x, name="f", shipper=FakeShipper(), max_batch_rows=5)


def test_import_and_instrument_stay_light():
    code = textwrap.dedent(
        """
        import sys
        import driftcar
        monitor = driftcar.instrument(lambda X: X, name="light", endpoint="http://127.0.0.1:9")
        monitor([[1.0]])
        heavy = sorted(m for m in ("scipy", "aiohttp", "sklearn", "pandas") if m in sys.modules)
        monitor.shutdown(0.5)
        print(",".join(heavy) or "light")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "light"


# --------------------------------------------------------------------------- more behaviours


def test_copy_false_keeps_references():
    shipper = FakeShipper()
    monitor = driftcar.instrument(lambda X: X * 2, name="ref", shipper=shipper, copy=False)
    X = np.ones((2, 2))
    out = monitor(X)
    assert shipper.items[0].inputs is X and shipper.items[0].outputs is out
    assert shipper.raw == 1  # the compact form carries the references themselves
    images = np.ones((2, 3, 3))
    monitor(images)
    assert shipper.items[1].inputs is None and shipper.items[1].outputs.shape == (2, 3, 3)


def test_without_an_sdk_provider_no_span_is_started_and_no_trace_id_kept():
    model = LinearRegression().fit(np.eye(2), [0.0, 1.0])
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="nosdk", shipper=shipper)
    assert monitor.state.tracer is not None and not monitor.state.otel_live
    model.predict(np.eye(2))
    assert shipper.part().calls["trace_id"] == [None]


def test_a_global_provider_set_later_is_picked_up():
    code = textwrap.dedent(
        """
        import numpy as np
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import driftcar

        class Keep:
            stats = {}
            def __init__(self): self.items = []
            def offer(self, c): self.items.append(c)
            def flush(self, t=0): return True
            def shutdown(self, t=0): return True

        keep = Keep()
        monitor = driftcar.instrument(lambda X: X, name="late", shipper=keep)
        monitor(np.ones((1, 1)))
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        for _ in range(256):
            monitor(np.ones((1, 1)))
        spans = exporter.get_finished_spans()
        traced = [c for c in keep.items if c.trace_id]
        print(len(spans), len(traced), keep.items[0].trace_id)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    spans, traced, first = out.stdout.split()
    assert int(spans) >= 1 and int(traced) == int(spans) and first == "0"


def test_threads_each_outermost_call_recorded_once_with_their_own_ids():
    import threading

    model = LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0])
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="threads", shipper=shipper)

    def worker(k):
        for i in range(100):
            with monitor.ids([f"t{k}-{i}"]):
                model.predict(np.eye(3)[i % 3:i % 3 + 1])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    part = shipper.part()
    assert len(part.calls["method"]) == 400 and part.rows == 400
    assert sorted(_col(part, "id").data) == sorted(f"t{k}-{i}" for k in range(4) for i in range(100))


def test_outermost_call_detection_across_copied_contexts_threads_and_errors():
    """A context copied while a call runs is nested on the same thread, outermost on another."""
    import contextvars
    import threading

    shipper = FakeShipper()
    inner_results = []

    def model(X):
        if X.shape[1] == 2:  # the "outer" call: re-enter through a copied context, here and in a thread
            ctx = contextvars.copy_context()
            inner_results.append(ctx.run(monitor, np.ones((1, 3))))  # same thread: nested, not captured
            other = threading.Thread(target=lambda: inner_results.append(ctx.run(monitor, np.ones((2, 3)))))
            other.start()
            other.join(30)
        if X.shape[1] == 4:
            raise ValueError("bad width")
        return X.sum(axis=1)

    monitor = driftcar.instrument(model, name="reentry", shipper=shipper)
    monitor(np.ones((3, 2)))
    with pytest.raises(ValueError):
        monitor(np.ones((1, 4)))
    monitor(np.ones((5, 3)))  # after an exception the next call is outermost again
    rows = sorted(item.rows for item in shipper.items)
    assert rows == [1, 2, 3, 5]  # the thread's call (2 rows), outer (3), the error (1), the last (5)
    assert len(inner_results) == 2 and monitor.stats["calls"] == 4


def test_an_unfitted_pipeline_gets_step_spans_after_fit():
    pipe, X, y = churn_pipeline()
    fresh = clone(pipe)
    provider, exporter = _spans()
    shipper = FakeShipper()
    driftcar.instrument(fresh, name="late-fit", shipper=shipper, tracer_provider=provider)
    fresh.fit(X, y)
    exporter.clear()
    fresh.predict(X.iloc[:2])
    names = {s.name for s in exporter.get_finished_spans()}
    assert {"Pipeline.predict", "ColumnTransformer.transform", "StandardScaler.transform", "OneHotEncoder.transform"} <= names
    fit_call, predict_call = shipper.part().calls["method"]
    assert (fit_call, predict_call) == ("fit", "predict")
    assert shipper.part().calls["captured"].tolist() == [0, 2]  # fit rows are not captured


def test_a_root_transformer_captures_its_inputs_only():
    scaler = StandardScaler()
    shipper = FakeShipper()
    driftcar.instrument(scaler, name="scaler", shipper=shipper)
    X = np.arange(6.0).reshape(3, 2)
    scaler.fit(X)
    scaler.transform(X)
    part = shipper.part()
    assert [c.name for c in part.columns] == ["x0", "x1"]
    assert part.calls["method"] == ["fit", "transform"] and part.calls["captured"].tolist() == [0, 3]


def test_river_pipeline_span_tree():
    from river import linear_model, preprocessing

    provider, exporter = _spans()
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    driftcar.instrument(model, name="r", shipper=FakeShipper(), tracer_provider=provider)
    model.predict_one({"a": 1.0})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["Pipeline.predict_one"]
    assert spans["StandardScaler.transform_one"].parent.span_id == root.context.span_id
    assert spans["LogisticRegression.predict_one"].parent.span_id == root.context.span_id
    assert spans["LogisticRegression.predict_proba_one"].parent.span_id == spans["LogisticRegression.predict_one"].context.span_id


def test_uninstrumented_callable_passes_through():
    def f(X):
        return X + 1

    shipper = FakeShipper()
    monitor = driftcar.instrument(f, name="f", shipper=shipper)
    assert driftcar.uninstrument(monitor.model) is f
    assert monitor(np.zeros((1, 1))).tolist() == [[1.0]]
    assert shipper.items == []
    assert driftcar.instrument(f, name="f", shipper=shipper) is not monitor


def test_default_shipper_gets_env_defaults_and_options(monkeypatch):
    monkeypatch.setenv("DRIFTCAR_ENDPOINT", "http://127.0.0.1:9")
    monitor = driftcar.instrument(lambda X: X, name="cfg", version="7", max_batch_rows=123)
    try:
        config = monitor.shipper.config
        assert (config.endpoint, config.protocol, config.max_batch_rows) == ("http://127.0.0.1:9", "grpc", 123)
        assert (config.model_name, config.model_version) == ("cfg", "7")
    finally:
        assert monitor.shutdown(1.0)
    monkeypatch.delenv("DRIFTCAR_ENDPOINT")
    monitor = driftcar.instrument(lambda X: X, name="http", protocol="http/protobuf")
    try:
        assert monitor.shipper.config.logs_url == "http://127.0.0.1:14318/v1/logs"
    finally:
        assert monitor.shutdown(1.0)


def test_refits_do_not_keep_old_fitted_clones_alive():
    import gc

    pipe, X, y = churn_pipeline()
    fresh = clone(pipe)
    provider, _ = _spans()
    monitor = driftcar.instrument(fresh, name="refit", shipper=FakeShipper(), tracer_provider=provider)
    live = []
    for _ in range(3):
        fresh.fit(X, y)
        gc.collect()
        live.append(monitor.live_wrappers())
    assert live[0] == live[1] == live[2]
    driftcar.uninstrument(fresh)
    assert not any(isinstance(v, Wrapper) for v in vars(fresh.named_steps["pre"].transformers_[0][1]).values())


def test_monitor_of_an_object_is_not_itself_callable():
    model = LinearRegression().fit(np.eye(2), [0.0, 1.0])
    monitor = driftcar.instrument(model, name="obj", shipper=FakeShipper())
    with pytest.raises(TypeError, match="call its methods"):
        monitor(np.eye(2))


def test_numeric_versions_and_schemeless_endpoints_are_accepted():
    monitor = driftcar.instrument(lambda X: X, name="v", version=3, endpoint="127.0.0.1:9")
    try:
        assert monitor.version == "3" and monitor.shipper.config.model_version == "3"
        assert monitor.shipper.config.grpc_target == ("127.0.0.1:9", False)
    finally:
        assert monitor.shutdown(1.0)
    with pytest.raises(TypeError, match=r"instrument\(\) got an unexpected keyword argument 'max_batch_row' "
                                        r"\(did you mean 'max_batch_rows'\?\)"):
        driftcar.instrument(lambda X: X, name="typo", max_batch_row=5)
    with pytest.raises(TypeError, match=r"instrument\(\) .*'verison' \(did you mean 'version'\?\)") as raised:
        driftcar.instrument(lambda X: X, name="typo", verison="3")
    assert "ShipperConfig" not in str(raised.value)


def test_ids_are_per_asyncio_task():
    import asyncio

    model = LinearRegression().fit(np.eye(2), [0.0, 1.0])
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="aio", shipper=shipper)

    async def handle(i):
        with monitor.ids([f"req-{i}"]):
            await asyncio.sleep(0)  # another task runs inside this block
            model.predict(np.eye(2)[:1])

    async def main():
        await asyncio.gather(*(handle(i) for i in range(20)))

    asyncio.run(main())
    assert sorted(_col(shipper.part(), "id").data) == sorted(f"req-{i}" for i in range(20))


def test_sample_can_change_at_runtime_and_shutdown_stops_capture():
    model = LinearRegression().fit(np.eye(2), [0.0, 1.0])
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="rate", shipper=shipper)
    model.predict(np.eye(2))
    monitor.sample = 0.0
    model.predict(np.eye(2))
    with pytest.raises(ValueError, match="sample must be"):
        monitor.sample = 2
    monitor.sample = 1.0
    model.predict(np.eye(2))
    assert shipper.part().calls["captured"].tolist() == [2, 0, 2]
    monitor.shutdown(0.1)
    model.predict(np.eye(2))
    assert len(shipper.items) == 3 and shipper.closed


def test_callable_objects_and_bound_methods():
    class Scorer:
        def __call__(self, X):
            return X[:, 0] * 2

    provider, exporter = _spans()
    shipper = FakeShipper()
    monitor = driftcar.instrument(Scorer(), name="scorer", shipper=shipper, tracer_provider=provider)
    assert monitor(np.ones((2, 1))).tolist() == [2.0, 2.0]
    model = LinearRegression().fit(np.eye(2), [0.0, 1.0])
    bound = driftcar.instrument(model.predict, name="bound", shipper=shipper, tracer_provider=provider)
    bound.model(np.eye(2))
    assert [s.name for s in exporter.get_finished_spans()] == ["Scorer.__call__", "LinearRegression.predict"]
    assert pickle.loads(pickle.dumps(bound.model))(np.eye(2)).tolist() == model.predict(np.eye(2)).tolist()
    assert [p.calls["method"] for p in shipper.parts()] == [["__call__"], ["__call__"]]  # two layouts


def test_image_batches_capture_outputs_only():
    shipper = FakeShipper()
    monitor = driftcar.instrument(lambda images: images.mean(axis=(1, 2)), name="img", shipper=shipper)
    images = np.random.default_rng(8).normal(size=(4, 8, 8))
    said = monitor(images)
    part = shipper.part()
    assert [c.name for c in part.columns] == ["prediction"]
    assert _col(part, "prediction").data.tolist() == said.tolist()
    assert part.calls["rows"].tolist() == [4] and shipper.items[0].inputs is None


def test_text_pipeline_captures_the_texts():
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["good movie", "bad movie", "great film", "awful film"]
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, [1, 0, 1, 0])
    shipper = FakeShipper()
    driftcar.instrument(pipe, name="text", shipper=shipper)
    said = pipe.predict(["good film", "bad"])
    part = shipper.part()
    assert _col(part, "x0").data == ["good film", "bad"]
    assert _col(part, "prediction").data.tolist() == said.tolist()


def test_a_broken_tracer_never_reaches_the_model():
    class BrokenTracer:
        def start_span(self, *args, **kwargs):
            raise RuntimeError("tracing backend exploded")

    class BrokenProvider:
        def get_tracer(self, *args, **kwargs):
            return BrokenTracer()

    pipe, X, _ = churn_pipeline()
    expected = pipe.predict(X.iloc[:3])
    shipper = FakeShipper()
    driftcar.instrument(pipe, name="broken", shipper=shipper, tracer_provider=BrokenProvider())
    assert pipe.predict(X.iloc[:3]).tolist() == expected.tolist()
    assert shipper.part().rows == 3


def test_set_reference_waits_for_delivery_only_while_it_succeeds(monkeypatch):
    monkeypatch.setattr(monitor_module, "REFERENCE_CHUNK_ROWS", 10)
    monkeypatch.setattr(monitor_module, "REFERENCE_FLUSH_BYTES", 1)  # flush after every chunk

    class Down(FakeShipper):
        def flush(self, timeout=0.0):
            self.flushes += 1
            return False

    shipper = Down()
    monitor = driftcar.instrument(lambda X: X, name="down", shipper=shipper)
    assert monitor.set_reference(np.ones((50, 2)), timeout=0.01) == 50
    assert shipper.flushes == 1 and len(shipper.items) == 5
