# INTERIM-SHIM: removed when the issue-12 moves are merged
from mnist_dist.cluster import ship_models_if_needed  # noqa: F401
from mnist_dist.ensure import ensure_models, ensure_store  # noqa: F401
from mnist_dist.run_state import prepare_out  # noqa: F401
from mnist_dist.score_job import DEFAULT_MODELS, DEFAULT_PARTITION_ROWS, ScoreRunSpec, run_score  # noqa: F401
