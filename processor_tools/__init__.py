"""
The operator and researcher tools beside the service: ``status``, the report generator and calibration.

They use the service's own readers (reports, lock, state, analysis) and are reached through
``python -m processor status|simulate|calibrate``; the service never imports them.
"""
