from libs.common.service import main
from services.risk.shell import RiskService

main(RiskService)
