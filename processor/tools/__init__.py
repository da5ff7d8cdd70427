"""Operator and researcher tools beside the service: status, the report generator, calibration."""
