"""infer: the Cloud Tasks target. Claims the job, analyses the photo, writes the result once."""

import functions_framework

from shared import http
from shared.bootstrap import dependencies
from shared.domain import jobs
from shared.errors import ServiceError, invalid_request
from shared.usecases import infer as use_cases

deps = dependencies()
analyze = deps.pipeline.analyze  # models load when the instance starts, not on the first task
QUEUE_NAMES = {deps.config.TASKS_QUEUE, deps.config.TASKS_QUEUE.rsplit("/", 1)[-1]}


@functions_framework.http
def infer(request):
    def from_queue():
        if request.headers.get("X-CloudTasks-QueueName") not in QUEUE_NAMES:
            raise ServiceError(403, "forbidden", "infer accepts only deliveries from its Cloud Tasks queue.")

    def handle():
        body = request.get_json(silent=True)
        job_id = body.get("jobId") if isinstance(body, dict) else None
        if not isinstance(job_id, str) or not jobs.is_job_id(job_id):
            raise invalid_request('The body must be JSON {"jobId": "<id>"} with a job id from upload.')
        try:
            retry_count = int(request.headers.get("X-CloudTasks-TaskRetryCount", "0"))
        except ValueError:
            retry_count = 0
        return use_cases.deliver(deps, analyze, job_id, retry_count)

    return http.respond(request, deps, "infer", handle, "POST", guard=from_queue, browsers=False)
