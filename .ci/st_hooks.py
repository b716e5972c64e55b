"""Schemathesis check for VIAS's error statuses.

VIAS answers 400 for an object that does not exist (VIAS.00010002), one that
exists already (VIAS.00010003, VIAS.00010011) and a change the object's state
does not allow (VIAS.00010012): valid requests that name the wrong object.
Schemathesis's own positive_data_acceptance check cannot tell those from a
400 for invalid data, so it is switched off in favour of this one: a
schema-valid request must be accepted, or refused for one of those reasons,
or for credentials, never with VIAS.00010001 (invalid parameter), which
would mean the schema admits what the server refuses.
"""

import urllib.parse

import schemathesis
from schemathesis.core.failures import Failure

OBJECT_ERRORS = {"VIAS.00010002", "VIAS.00010003", "VIAS.00010011", "VIAS.00010012"}


def unroutable_id(url):
    path = urllib.parse.urlsplit(url).path.lower()
    dots = {".", "..", "%2e", "%2e%2e", ".%2e", "%2e."}
    return "%2f" in path or any(segment in dots for segment in path.split("/"))


@schemathesis.check
def vias_positive_data_acceptance(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if 200 <= status < 300 or status in (401, 403, 429):
        return None
    # A generated id may hold a `/`, `.` or `..`: sent percent-encoded or as
    # a dot segment it names a path no route has, and 404 is the answer.
    if status == 404 and unroutable_id(response.request.url):
        return None
    code = None
    if status == 400:
        try:
            code = response.json().get("error_code")
        except Exception:
            code = None
        if code in OBJECT_ERRORS:
            return None
        # ListBatchTasks: a non-empty name_like needs type_like to say which
        # field it searches. OpenAPI 3.0 cannot say that one query parameter
        # requires another; the document says it in words.
        try:
            params = response.json().get("params")
        except Exception:
            params = None
        if case.operation.label == "GET /v2/{project_id}/batch-tasks" and params == ["name_like"] \
                and "type_like" in response.text:
            return None
        # A schedule's windows: end_at after begin_at, and one list of
        # windows or one per day of days_of_week. Both compare two fields;
        # the document says them in words.
        if params == ["schedule.periods"] and (
                "must come after its begin_at" in response.text
                or "one per entry of days_of_week" in response.text):
            return None
    raise Failure(
        operation=case.operation.label,
        title="Schema-valid request refused",
        message=f"{status} {code}: {response.text[:400]}",
    )
