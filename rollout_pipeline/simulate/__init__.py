"""Simulated days of traffic from real scikit-learn models through the real Router (see docs/serving.md).

``rollout_pipeline.simulate.day.simulate_day`` is the API; this package stays
light to import so that the CLI's ``--help`` is fast.
"""
