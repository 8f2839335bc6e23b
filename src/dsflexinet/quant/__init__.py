"""Quantization: QAT preparation, int8 conversion and export."""
