from libs.common.service import main
from services.market_data.shell import MarketDataService

main(MarketDataService)
