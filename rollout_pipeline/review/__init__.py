"""The morning review of a decision: its content built once, rendered as Dagster markdown and as HTML."""
