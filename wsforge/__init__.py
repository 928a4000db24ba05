"""wsforge: real-time requirements in, a WebSocket system you own out.

The five steps, in order: :mod:`~wsforge.requirements` (1), :mod:`~wsforge.architecture` (2),
:mod:`~wsforge.memory` (3), :mod:`~wsforge.render` (4) and :mod:`~wsforge.review` (5), wired by
:mod:`~wsforge.workflow`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
