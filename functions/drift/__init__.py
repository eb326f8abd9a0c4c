"""The drift check (``check``), its scheduled function (``handler``) and the retrain trigger (``retrain``)."""


def drift_function_name(stack_name: str) -> str:
    """The drift function's physical name, ``<stack>-drift``: how ``shipyard drift check`` finds it.

    (Dependency-free, so the CLI can import it without numpy.)
    """
    return f"{stack_name[:58]}-drift"
