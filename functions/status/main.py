"""status: the job for its owner (GET), or its erasure (DELETE); 404 for anyone else."""

import functions_framework

from shared import http
from shared.bootstrap import dependencies
from shared.errors import ServiceError
from shared.usecases import status as use_cases

deps = dependencies()
verify_token = deps.tokens.uid  # built at start: refuses emulator tokens on a real project


@functions_framework.http
def status(request):
    def handle():
        uid = verify_token(request.headers.get("Authorization"), request.headers.get("X-Firebase-AppCheck"))
        job_id = request.path.strip("/") or request.args.get("jobId", "")
        if not job_id:
            raise ServiceError(400, "invalid_request", "Name the job: GET /<jobId> or /?jobId=<jobId>.")
        if request.method == "DELETE":
            return use_cases.erase(deps, uid, job_id)
        return use_cases.read(deps, uid, job_id)

    return http.respond(request, deps, "status", handle, "GET, DELETE")
