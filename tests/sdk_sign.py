"""Signs requests with Huawei Cloud's own Python SDK core (huaweicloudsdkcore's
Signer, SDK-HMAC-SHA256), optionally changes one part of each after signing,
sends it as the signer left it, and prints one JSON line per request:
{"name", "status", "body"}.

Usage: TC_AK=... TC_SK=... python3 sdk_sign.py http://HOST:PORT < cases.json

Each case: {"name", "method", "path", "query": [[k, v], ...], "headers": {...},
"body": "..." or null, "tamper": {...} or null}, where tamper is one of
{"method": M}, {"path": P}, {"query": "raw query"}, {"body": "..."},
{"header": [NAME, VALUE]}, {"date_shift": SECONDS}.
"""

import datetime
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

try:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer
except ImportError as e:  # the Rust test turns this into its failure message
    print(f"huaweicloudsdkcore is not installed ({e}): pip install huaweicloudsdkcore",
          file=sys.stderr)
    sys.exit(3)


def main():
    base = sys.argv[1]
    split = urllib.parse.urlsplit(base)
    signer = Signer(BasicCredentials(os.environ["TC_AK"], os.environ["TC_SK"]))
    for case in json.load(sys.stdin):
        headers = {"Content-Type": "application/json"}
        headers.update(case.get("headers") or {})
        request = SdkRequest(
            method=case["method"],
            schema=split.scheme,
            host=split.netloc,
            resource_path=case["path"],
            query_params=[tuple(p) for p in case.get("query") or []],
            header_params=headers,
            body=case.get("body") or "",
        )
        request = signer.sign(request)
        method = request.method
        uri = request.uri
        sent_headers = dict(request.header_params)
        body = request.body or b""
        tamper = case.get("tamper") or {}
        if "method" in tamper:
            method = tamper["method"]
        if "path" in tamper:
            uri = tamper["path"] + (uri[uri.index("?"):] if "?" in uri else "")
        if "query" in tamper:
            uri = uri.split("?")[0] + "?" + tamper["query"]
        if "body" in tamper:
            body = tamper["body"].encode("utf-8")
        if "header" in tamper:
            name, value = tamper["header"]
            sent_headers = {k: v for k, v in sent_headers.items() if k.lower() != name.lower()}
            sent_headers[name] = value
        if "date_shift" in tamper:
            old = datetime.datetime.strptime(sent_headers["X-Sdk-Date"], "%Y%m%dT%H%M%SZ")
            new = old + datetime.timedelta(seconds=tamper["date_shift"])
            sent_headers["X-Sdk-Date"] = new.strftime("%Y%m%dT%H%M%SZ")
        # The path may hold non-ASCII (a CJK name): percent-encode it as an
        # HTTP client does, leaving what the signer encoded already.
        url = base + urllib.parse.quote(uri, safe="/?&=%~+")
        sent = urllib.request.Request(url, data=body or None, method=method, headers=sent_headers)
        try:
            with urllib.request.urlopen(sent, timeout=30) as reply:
                status, text = reply.status, reply.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode("utf-8", "replace")
        print(json.dumps({"name": case["name"], "status": status, "body": parsed}), flush=True)


main()
