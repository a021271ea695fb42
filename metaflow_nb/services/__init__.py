"""Services: the OperationService and the meta workflows that call it many times."""
from .operation import OperationService  # noqa: F401
from .results import BacktestResult  # noqa: F401
