"""The local cloud: the synthesized stack running in-process on moto (see docs/local.md).

Entry points: `LocalCloud` (start/stop, outputs, tick, evaluate_alarms, wait_idle) and `synthesize`.
"""
from .cloud import DeployError, LocalCloud, synthesize
from .template import Template, TemplateError

__all__ = ["LocalCloud", "DeployError", "Template", "TemplateError", "synthesize"]
