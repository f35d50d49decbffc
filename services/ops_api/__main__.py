from libs.common.service import main
from services.ops_api.shell import OpsApiService

main(OpsApiService)
