"""The batch formatter of the calibration test (tools spec §1): see :mod:`reports_batch_formatter.formatter`."""
