"""Network architectures. Importing this package registers every model family."""

from sirst.models.registry import create_model, list_models, register_model

# Model families register themselves on import; one module per family.
from sirst.models import dnanet  # noqa: F401  (registration side effect)
from sirst.models import acm  # noqa: F401
from sirst.models import alcnet  # noqa: F401
from sirst.models import mdvsfa  # noqa: F401

__all__ = ["create_model", "list_models", "register_model"]
