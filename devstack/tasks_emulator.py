"""Run PyPI's gcloud-tasks-emulator bound to 127.0.0.1 (it binds every interface by itself).

Runs in its own virtualenv (.venv-tasks): the emulator pins an old protobuf.
"""

import grpc

_make_server = grpc.server


def _loopback_server(*args, **kwargs):
    server = _make_server(*args, **kwargs)
    add_port = server.add_insecure_port
    server.add_insecure_port = lambda address: add_port(address.replace("[::]", "127.0.0.1"))
    return server


grpc.server = _loopback_server

if __name__ == "__main__":
    from gcloud_tasks_emulator.__main__ import main

    main()
