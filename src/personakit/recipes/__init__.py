"""End-to-end recipes: the only place that combines families."""

from personakit.recipes.demo import DEMO_METRICS, DemoResult, run_demo

__all__ = ["DEMO_METRICS", "DemoResult", "run_demo"]
