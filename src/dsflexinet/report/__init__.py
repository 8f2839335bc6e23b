"""Reports: the paper's tables, figures and metrics.json."""
