"""Metrics: accumulated values against NumPy computations over several batches."""

import math

import numpy as onp
import pytest

from kiln import KilnError, gluon, metric, np
from kiln.base import ShapeError

RNG = onp.random.default_rng(0)


def _batches(n_batches=3, n=8, c=4):
    out = []
    for _ in range(n_batches):
        scores = RNG.random((n, c)).astype(onp.float32)
        labels = RNG.integers(0, c, n)
        out.append((labels, scores))
    return out


def test_gluon_metric_is_kiln_metric():
    assert gluon.metric is metric


def test_accuracy_over_batches_with_kiln_and_numpy_arrays():
    acc = metric.Accuracy()
    assert acc.get()[0] == "accuracy" and math.isnan(acc.get()[1])
    batches = _batches()
    correct = total = 0
    for i, (labels, scores) in enumerate(batches):
        if i % 2:
            acc.update(np.array(labels), np.array(scores))       # single arrays
        else:
            acc.update([labels], [scores])                       # lists
        correct += (scores.argmax(1) == labels).sum()
        total += len(labels)
    assert acc.get() == ("accuracy", pytest.approx(correct / total))
    acc.reset()
    assert acc.num_inst == 0 and math.isnan(acc.get()[1])
    acc.update(onp.array([1, 2, 3]), onp.array([1.0, 2.0, 0.0]))  # predicted classes directly
    assert acc.get()[1] == pytest.approx(2 / 3)


def test_accuracy_shape_errors():
    with pytest.raises(ShapeError, match="2 label array"):
        metric.Accuracy().update([onp.zeros(2), onp.zeros(2)], [onp.zeros((2, 3))])
    with pytest.raises(ShapeError, match="3 labels for 2 predictions"):
        metric.Accuracy().update(onp.zeros(3), onp.zeros((2, 4)))


def test_top_k_accuracy():
    labels, scores = _batches(1, 20, 6)[0]
    m = metric.TopKAccuracy(top_k=3)
    m.update(labels, scores)
    top3 = onp.argsort(-scores, axis=1)[:, :3]
    want = (top3 == labels[:, None]).any(1).mean()
    assert m.get() == ("top_k_accuracy_3", pytest.approx(want))
    m1 = metric.TopKAccuracy(top_k=1)
    m1.update(labels, scores)
    assert m1.get()[1] == pytest.approx((scores.argmax(1) == labels).mean())


def test_regression_metrics():
    preds = [RNG.standard_normal((5, 3)), RNG.standard_normal((7, 3))]
    labels = [RNG.standard_normal((5, 3)), RNG.standard_normal((7, 3))]
    mae, mse, rmse = metric.MAE(), metric.MSE(), metric.RMSE()
    for m in (mae, mse, rmse):
        m.update(labels, preds)
    err = onp.concatenate([lab - p for lab, p in zip(labels, preds)])
    assert mae.get()[1] == pytest.approx(onp.abs(err).mean())
    assert mse.get()[1] == pytest.approx((err ** 2).mean())
    assert rmse.get()[1] == pytest.approx(math.sqrt((err ** 2).mean()))
    # (N,) labels against (N, 1) predictions
    m = metric.MSE()
    m.update(onp.array([1.0, 2.0]), onp.array([[1.5], [2.0]]))
    assert m.get()[1] == pytest.approx(0.125)


def test_cross_entropy_and_loss():
    labels, scores = _batches(1, 10, 5)[0]
    probs = scores / scores.sum(1, keepdims=True)
    ce = metric.CrossEntropy()
    ce.update(labels, probs)
    assert ce.get()[1] == pytest.approx(-onp.log(probs[onp.arange(10), labels]).mean(),
                                        rel=1e-5)
    loss = metric.Loss()
    loss.update(None, np.array([1.0, 2.0, 3.0]))
    loss.update(None, [np.array([6.0])])
    assert loss.get() == ("loss", pytest.approx(3.0))


def test_composite_and_create():
    labels, scores = _batches(1)[0]
    comp = metric.create(["acc", "ce"])
    assert isinstance(comp, metric.CompositeEvalMetric)
    comp.update(labels, scores / scores.sum(1, keepdims=True))
    names, values = comp.get()
    assert names == ["accuracy", "cross-entropy"] and len(values) == 2
    assert comp.get_metric(0).get()[1] == values[0]
    assert dict(comp.get_name_value())["accuracy"] == values[0]
    comp.reset()
    assert comp.get_metric(0).num_inst == 0
    with pytest.raises(KilnError, match="unknown metric 'f2'"):
        metric.create("f2")
    with pytest.raises(KilnError, match="out of range"):
        comp.get_metric(5)


def test_custom_metric():
    def total_abs(label, pred):
        return float(onp.abs(label - pred).sum()), label.size

    m = metric.create(total_abs)
    m.update([onp.array([1.0, 2.0])], [onp.array([2.0, 2.0])])
    assert m.get() == ("total_abs", pytest.approx(0.5))
    m2 = metric.np(lambda label, pred: float((label == pred).mean()))
    m2.update(onp.array([1, 2]), onp.array([1, 3]))
    assert m2.get()[1] == pytest.approx(0.5)
