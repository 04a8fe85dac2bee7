"""upload: validate the photo, store it, create the job and its Cloud Tasks task; answer 202 at once."""

import functions_framework

from shared import http
from shared.bootstrap import dependencies
from shared.usecases import upload as use_cases

deps = dependencies()
verify_token = deps.tokens.uid  # built at start: refuses emulator tokens on a real project


@functions_framework.http
def upload(request):
    def handle():
        uid = verify_token(request.headers.get("Authorization"), request.headers.get("X-Firebase-AppCheck"))
        key = http.idempotency_key(request)
        data, content_type = http.read_image(request, deps.config.MAX_UPLOAD_BYTES)
        return use_cases.upload(deps, uid, data, content_type, key)

    return http.respond(request, deps, "upload", handle, "POST")
