from libs.common.service import main
from services.signal.shell import SignalService

main(SignalService)
