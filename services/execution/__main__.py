from libs.common.service import main
from services.execution.shell import ExecutionService

main(ExecutionService)
