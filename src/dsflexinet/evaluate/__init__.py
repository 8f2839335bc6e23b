"""Evaluation: accuracy per device and group, confusion matrices, prediction on WAV files."""
