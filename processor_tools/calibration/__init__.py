"""
Calibration tools: compare the analysis with calibration experiments of known download speed (tools spec §2).

The package is split by concept and imports nothing heavy here, so that the batch formatter can use
:mod:`processor_tools.calibration.batches` without pandas or matplotlib:

* :mod:`~processor_tools.calibration.batches` — a directory of logs cut into the service's windows (the formatter);
* :mod:`~processor_tools.calibration.description` — ``description.yml`` (both schemas) and the expected usage;
* :mod:`~processor_tools.calibration.netusage` — ``network_usage.log`` and its 9-sample groups;
* :mod:`~processor_tools.calibration.table` — analysing batch directories into the calibration table, CSV, summary;
* :mod:`~processor_tools.calibration.plots` — the matplotlib figures (no pyplot, no global backend);
* :mod:`~processor_tools.calibration.command` — ``python -m processor calibrate`` (``add_arguments``, ``run``);
* :mod:`~processor_tools.calibration.notebook` — the notebook's inputs (its default, simulated experiment).
"""
