"""Evaluation protocols and metrics (LFW verification, calibration)."""
