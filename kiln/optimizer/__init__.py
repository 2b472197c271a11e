"""`kiln.optimizer`: optimizers (MXNet's `mxnet.optimizer`) and learning-rate schedules.

    >>> opt = kiln.optimizer.create('sgd', learning_rate=0.1, momentum=0.9)
"""

from . import lr_scheduler
from .optimizer import Optimizer, Updater, create, get_updater, register
from .optimizers import NAG, SGD, AdaGrad, Adam, AdamW, RMSProp

#: MXNet's alias
create_optimizer = create

__all__ = ["Optimizer", "Updater", "create", "create_optimizer", "get_updater", "register",
           "SGD", "NAG", "Adam", "AdamW", "RMSProp", "AdaGrad", "lr_scheduler"]
