"""sweep: end as `failed` every job that no delivery will finish. Private: Cloud Scheduler calls it with its own
OIDC identity (deploy/deploy.sh); locally `make sweep`."""

import functions_framework

from shared import http
from shared.bootstrap import dependencies
from shared.usecases import status as use_cases

deps = dependencies()


@functions_framework.http
def sweep(request):
    def handle():
        return use_cases.sweep(deps)

    return http.respond(request, deps, "sweep", handle, "POST")
