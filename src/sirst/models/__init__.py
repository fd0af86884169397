"""Network architectures and their bundled weights. Importing this package registers every model family.

``create_model(name, pretrained=None, **kwargs)`` and ``list_models(pretrained=False)`` are the entry
points; every family subclasses :class:`~sirst.models.base.SirstModel` and registers its constructors
with ``@register_model``.
"""

from sirst.models.base import SirstModel, main_output, pad_to_multiple, unwrap
from sirst.models.factory import create_model, list_models
from sirst.models.registry import register_model

# Model families register themselves on import; one module per family.
from sirst.models import dnanet  # noqa: F401  (registration side effect)
from sirst.models import acm  # noqa: F401
from sirst.models import alcnet  # noqa: F401
from sirst.models import mdvsfa  # noqa: F401

__all__ = ["SirstModel", "create_model", "list_models", "main_output", "pad_to_multiple", "register_model", "unwrap"]
