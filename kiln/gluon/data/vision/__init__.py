"""`kiln.gluon.data.vision`: image transforms and datasets."""

from .. import datasets  # noqa: F401
from . import transforms  # noqa: F401
