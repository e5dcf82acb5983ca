"""End-to-end recipes: the only place that combines families."""
