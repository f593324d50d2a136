"""The HTTP edge: what every request passes before any route runs (request hygiene), and
how every route's failures are answered (faults and bugs as OperationOutcomes, no caching).

* :mod:`fkj.edge.hygiene` — control characters and malformed text refused, per request part;
* :mod:`fkj.edge.middleware` — :class:`Edge`, the ASGI middleware that applies it on every
  route, adds ``Cache-Control: no-store`` and answers escaped exceptions.
"""

from fkj.edge.hygiene import RefusedPart, check_json
from fkj.edge.middleware import Edge, answer_for

__all__ = ["Edge", "RefusedPart", "answer_for", "check_json"]
