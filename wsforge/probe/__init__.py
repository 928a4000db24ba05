"""``wsforge probe``: a bounded black-box audit of a running WebSocket server.

::

    report = asyncio.run(run_probes(ProbeOptions("ws://127.0.0.1:8000/ws", jwt_secret=...)))

The report has the same shape (and formats, and exit codes) as a config review.
"""

from .probes import PROBES, ProbeOptions, ProbeResult, Verdict
from .runner import probe_rules, run_probes

__all__ = ["PROBES", "ProbeOptions", "ProbeResult", "Verdict", "probe_rules", "run_probes"]
