"""The optimizers: SGD, NAG, Adam, AdamW, RMSProp, AdaGrad.

The rules are those of MXNet 2's default (fused-kernel) updates; note where the weight decay
enters relative to clipping, which differs between them as it does in MXNet. Notation: lr is the
learning rate after schedule and lr_mult, wd the weight decay after wd_mult, t the number of
updates of this parameter so far (1 at the first).
"""

from __future__ import annotations

import math

import numpy as _np

from ..base import KilnError
from .optimizer import Optimizer, register

__all__ = ["SGD", "NAG", "Adam", "AdamW", "RMSProp", "AdaGrad"]


def _check_unit(name: str, cls: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise KilnError(f"{cls}: {name} must be in [0, 1), not {value}")


@register
class SGD(Optimizer):
    """Stochastic gradient descent with momentum and weight decay::

        g = clip(rescale_grad * grad) + wd * w
        mom = momentum * mom - lr * g        (momentum > 0)
        w = w + mom                          (w = w - lr * g without momentum)
    """

    def __init__(self, learning_rate: float | None = None, momentum: float = 0.0,
                 lazy_update: bool = False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        _check_unit("momentum", "SGD", momentum)
        self.momentum = momentum
        self.lazy_update = lazy_update     # accepted for MXNet code; kiln's grads are dense

    def create_state(self, index, weight):
        return self._zeros(weight) if self.momentum != 0.0 else None

    def _step(self, index, weight, grad, state, lr, wd):
        step = self._prep_grad(grad, weight, wd, scale=lr)       # lr * g
        if state is None:
            weight -= step
            return
        mom = state._data
        mom *= self.momentum
        mom -= step
        weight += mom

    def _fused_step(self, indices, weights, grads, states) -> bool:
        has_mom = self.momentum != 0.0
        found = self._fused_arrays(indices, weights, grads, states, 1 if has_mom else 0)
        if found is None:
            return False
        kernels, ws, gs, st, lrs, wds = found
        kernels.sgd_update_multi(ws, gs, st[0] if has_mom else None, lrs, wds,
                                 momentum=self.momentum, rescale=self.rescale_grad,
                                 clip=self.clip_gradient)
        self._flush_all(indices, states)
        return True


@register
class NAG(Optimizer):
    """Nesterov accelerated gradient::

        g = clip(rescale_grad * grad) + wd * w
        mom = momentum * mom - lr * g
        w = w + momentum * mom - lr * g
    """

    _default_lr = 0.1

    def __init__(self, learning_rate: float | None = None, momentum: float = 0.9, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        _check_unit("momentum", "NAG", momentum)
        self.momentum = momentum

    def create_state(self, index, weight):
        return self._zeros(weight) if self.momentum != 0.0 else None

    def _step(self, index, weight, grad, state, lr, wd):
        step = self._prep_grad(grad, weight, wd, scale=lr)       # lr * g
        if state is None:
            weight -= step
            return
        mom = state._data
        mom *= self.momentum
        mom -= step
        look_ahead = self._buf(weight, 1)
        _np.multiply(mom, self.momentum, out=look_ahead)
        look_ahead -= step
        weight += look_ahead


@register
class Adam(Optimizer):
    """Adam, with MXNet's bias correction folded into the rate::

        g = clip(rescale_grad * grad + wd * w)
        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
        lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
        w = w - lr_t * m / (sqrt(v) + epsilon)
    """

    _default_lr = 0.001

    def __init__(self, learning_rate: float | None = None, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-8, lazy_update: bool = False,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        _check_unit("beta1", "Adam", beta1)
        _check_unit("beta2", "Adam", beta2)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.lazy_update = lazy_update

    def create_state(self, index, weight):
        return (self._zeros(weight), self._zeros(weight))      # mean, variance

    def _moments(self, g, state, weight):
        mean, var = state[0]._data, state[1]._data
        tmp = self._buf(weight, 1)
        mean *= self.beta1
        _np.multiply(g, 1.0 - self.beta1, out=tmp)
        mean += tmp
        var *= self.beta2
        _np.square(g, out=tmp)
        tmp *= 1.0 - self.beta2
        var += tmp
        # tmp <- m / (sqrt(v) + eps)
        _np.sqrt(var, out=tmp)
        tmp += self.epsilon
        _np.divide(mean, tmp, out=tmp)
        return tmp

    def _corrected(self, index, lr):
        t = self._index_update_count[index]
        return lr * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)

    def _step(self, index, weight, grad, state, lr, wd):
        g = self._prep_grad(grad, weight, wd, clip_after_wd=True)
        d = self._moments(g, state, weight)
        d *= self._corrected(index, lr)
        weight -= d

    def _fused_step(self, indices, weights, grads, states) -> bool:
        # The native kernel clips before adding weight decay; Adam here clips after (MXNet's
        # fused Adam), so clipped updates stay on the NumPy path.
        if self.clip_gradient is not None or type(self) is not Adam:
            return False
        found = self._fused_arrays(indices, weights, grads, states, 2)
        if found is None:
            return False
        kernels, ws, gs, (means, variances), lrs, wds = found
        rates = [self._corrected(i, lr) for i, lr in zip(indices, lrs)]
        kernels.adam_update_multi(ws, gs, means, variances, rates, wds, beta1=self.beta1,
                                  beta2=self.beta2, epsilon=self.epsilon,
                                  rescale=self.rescale_grad)
        self._flush_all(indices, states)
        return True


@register
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter)::

        g = clip(rescale_grad * grad)                      (no wd in the gradient)
        m, v as Adam; lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t) if correct_bias else lr
        w = w - lr_t * (m / (sqrt(v) + epsilon) + wd * w)
    """

    def __init__(self, learning_rate: float | None = None, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-6, correct_bias: bool = True,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, beta1=beta1, beta2=beta2,
                         epsilon=epsilon, **kwargs)
        self.correct_bias = correct_bias

    def _step(self, index, weight, grad, state, lr, wd):
        g = self._prep_grad(grad, weight, 0.0)
        d = self._moments(g, state, weight)
        if wd:
            _np.multiply(weight, wd, out=g)        # g's buffer is free again
            d += g
        d *= self._corrected(index, lr) if self.correct_bias else lr
        weight -= d


@register
class RMSProp(Optimizer):
    """RMSProp: Tieleman & Hinton's, or Graves's with centered=True::

        g = clip(rescale_grad * grad + wd * w)
        plain:    v = rho * v + (1 - rho) * g^2;  w = w - lr * g / sqrt(v + epsilon)
        centered: n = rho * n + (1 - rho) * g;    v = rho * v + (1 - rho) * g^2
                  mom = momentum * mom - lr * g / sqrt(v - n^2 + epsilon);  w = w + mom
        then w is clipped into [-clip_weights, clip_weights] if clip_weights is set.

    `gamma1`/`gamma2` (MXNet 1.x's names) are accepted for `rho`/`momentum`.
    """

    _default_lr = 0.001

    def __init__(self, learning_rate: float | None = None, rho: float = 0.9,
                 momentum: float = 0.9, epsilon: float = 1e-8, centered: bool = False,
                 clip_weights: float | None = None, gamma1: float | None = None,
                 gamma2: float | None = None, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = rho if gamma1 is None else gamma1
        self.momentum = momentum if gamma2 is None else gamma2
        _check_unit("rho", "RMSProp", self.rho)
        _check_unit("momentum", "RMSProp", self.momentum)
        self.epsilon = epsilon
        self.centered = centered
        self.clip_weights = clip_weights

    def create_state(self, index, weight):
        if self.centered:
            return (self._zeros(weight), self._zeros(weight), self._zeros(weight))
        return self._zeros(weight)

    def _step(self, index, weight, grad, state, lr, wd):
        g = self._prep_grad(grad, weight, wd, clip_after_wd=True)
        tmp = self._buf(weight, 1)
        rho = self.rho
        if not self.centered:
            var = state._data
            var *= rho
            _np.square(g, out=tmp)
            tmp *= 1.0 - rho
            var += tmp
            _np.add(var, self.epsilon, out=tmp)
            _np.sqrt(tmp, out=tmp)
            _np.divide(g, tmp, out=tmp)
            tmp *= lr
            weight -= tmp
        else:
            mean, var, mom = (s._data for s in state)
            mean *= rho
            _np.multiply(g, 1.0 - rho, out=tmp)
            mean += tmp
            var *= rho
            _np.square(g, out=tmp)
            tmp *= 1.0 - rho
            var += tmp
            _np.square(mean, out=tmp)
            _np.subtract(var, tmp, out=tmp)
            tmp += self.epsilon
            _np.sqrt(tmp, out=tmp)
            _np.divide(g, tmp, out=tmp)
            tmp *= lr
            mom *= self.momentum
            mom -= tmp
            weight += mom
        if self.clip_weights:
            _np.clip(weight, -self.clip_weights, self.clip_weights, out=weight)


@register
class AdaGrad(Optimizer):
    """AdaGrad::

        g = clip(rescale_grad * grad) + wd * w
        h = h + g^2;   w = w - lr * g / (sqrt(h) + epsilon)

    `eps` (MXNet 1.x's name) is accepted for `epsilon`.
    """

    def __init__(self, learning_rate: float | None = None, epsilon: float = 1e-6,
                 eps: float | None = None, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.epsilon = epsilon if eps is None else eps

    def create_state(self, index, weight):
        return self._zeros(weight)                 # sum of squared gradients

    def _step(self, index, weight, grad, state, lr, wd):
        g = self._prep_grad(grad, weight, wd)
        hist = state._data
        tmp = self._buf(weight, 1)
        _np.square(g, out=tmp)
        hist += tmp
        _np.sqrt(hist, out=tmp)
        tmp += self.epsilon
        _np.divide(g, tmp, out=tmp)
        tmp *= lr
        weight -= tmp
