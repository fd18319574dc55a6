"""Pure decision logic: records, judge, policy, retention. No Dagster, no SQL."""
