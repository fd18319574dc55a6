"""Serving: the Router (sticky split, shadow mirroring), the batched log writer, the HTTP app.

Modules are imported directly (``rollout_pipeline.serving.router`` etc.) so that
importing the CLI does not pull in SQLAlchemy or Starlette. See docs/serving.md.
"""
