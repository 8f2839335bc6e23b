"""Data: the TAU22 layout, the synthetic default set, verified downloads, impulse-response sets, waveform caches."""
