"""The ranges every number of a policy keeps (docs/policy.md, "Ranges"): past these no rollout makes sense.

Unbounded values broke arithmetic downstream (approval_expiry_days 99999999999 overflowed a date).
"""

MAX_DAYS = 36_500  # days in a step, in shadow, of retention, to approve: a century (a date + 2.9M days overflows)
MAX_COUNT = 1_000_000_000  # counts of requests, units, rows, events
MAX_FACTOR = 100.0  # relative allowances and effect sizes (100 = 10,000%), standard deviations
MAX_LATENCY_MS = 3_600_000.0  # an hour
MAX_PREDICTION = 1e15  # |prediction_bounds|: the log contract's ABSURD_VALUE (domain.summary)
