"""Signs one GET with Huawei's SDK signer and prints its headers, one
`Name: value` per line, for the load generator to replay.

    python3 bench/sign.py AK SK HOST PATH PROJECT
"""
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

ak, sk, host, path, project = sys.argv[1:6]
request = Signer(BasicCredentials(ak, sk)).sign(
    SdkRequest(
        "GET",
        "http",
        host,
        path,
        query_params=[],
        header_params={"Content-Type": "application/json", "X-Project-Id": project},
        body="",
    )
)
for name, value in request.header_params.items():
    print(f"{name}: {value}")
