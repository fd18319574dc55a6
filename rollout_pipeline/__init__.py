"""rollout-pipeline: data-driven shadow -> canary -> production rollouts of ML models."""

__version__ = "0.1.0"

import warnings

# pyspark 4.3 (the `spark` extra) warns at import that it does not fully support pandas 3, and Great
# Expectations imports pyspark whenever it is installed. Nothing here converts Spark data to pandas
# (store/spark_summary.py collects Rows), so the warning says nothing to our users.
warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*", category=FutureWarning)
