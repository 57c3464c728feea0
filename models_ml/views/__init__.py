"""Pages of the ML lifecycle: generate, lineage, retraining and the dashboard."""
