"""rollout-pipeline: data-driven shadow -> canary -> production rollouts of ML models."""

__version__ = "0.1.0"
