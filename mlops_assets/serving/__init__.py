"""Serving: the BentoML prediction service's domain code, tested without a server.

- ``server``: starting and stopping ``bentoml serve`` as a child process (CLI, tests, benchmarks)
- ``routing``: sticky, deterministic assignment of an entity to champion or challenger
- ``experiments``: the experiment an operator declared, started, changed or stopped
- ``prediction_log``: every answered request in one SQL table, written in batches off the request path
- ``experiment_stats``: per-variant figures, sample-ratio check, lift, sequential and Bayesian tests
- ``assets`` / ``sensors``: the prediction log and the A/B report in the Dagster lineage graph
- ``commands``: ``mlops experiment start|status|stop``

``bento/service.py`` only wires these to HTTP.
"""

from typing import Any

_SERVER_NAMES = ("RunningServer", "ServerError", "check_prediction_log", "check_servable", "free_port", "running_server", "serve_command",
                 "server_environment", "stop_process_group", "wait_ready")
__all__ = list(_SERVER_NAMES)


def __getattr__(name: str) -> Any:
    """Process management, imported on first use: the CLI's help must not wait for MLflow to import."""
    if name in _SERVER_NAMES:
        from mlops_assets.serving import server

        return getattr(server, name)
    raise AttributeError(f"module 'mlops_assets.serving' has no attribute {name!r}")
