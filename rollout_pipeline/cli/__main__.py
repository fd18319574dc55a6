"""``python -m rollout_pipeline.cli``: the console script."""

from rollout_pipeline.cli.group import main

if __name__ == "__main__":
    main()
