"""
The original tix-time-processor's Python API (compat spec), kept so that its tests, notebooks and scripts run.

Re-exported under the original names: ``processor.reports``, ``processor.analysis``, ``processor.hurst`` and
``processor.api_communication``. Delegates to the new exact analysis: the original's numbers wherever the
original did not crash and saw observations in time order. Nothing here imports Celery.
"""

# processor.reports and processor.analysis re-export names of this package, which itself reads their modules:
# loading both packages first, whichever module is imported first, keeps each of them complete when the other
# asks for it.
import processor.reports  # noqa: I001 - reports first: processor.compat.observations reads processor.reports.records
import processor.analysis  # noqa: F401
