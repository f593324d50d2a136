"""Bulk data: NDJSON/Bundle import (``fkj import``) and FHIR Bulk Data ``$export``.

- :mod:`fkj.bulk.importer` — two-pass, resumable, idempotent import (``import_paths``).
- :mod:`fkj.bulk.exporter` — the export writer shared by ``$export`` and ``fkj export``.
- :mod:`fkj.bulk.jobs` — export job state and the background worker.
- :mod:`fkj.bulk.routes` — status and file routes (``export_routes(fkj)``).
- :mod:`fkj.bulk.tables` — the job tables (migration 0005).
"""
