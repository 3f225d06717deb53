"""Run gcloud-tasks-emulator bound to loopback only (upstream binds every interface).

Usage: python scripts/tasks_emulator.py PORT QUEUE_PATH[,QUEUE_PATH...] [MAX_RETRIES]
(the jobs queue and the webhooks queue, each served on its own)
"""

import logging
import sys

import grpc
from gcloud_tasks_emulator.server import create_server

_grpc_server = grpc.server


def _loopback_server(*args, **kwargs):
    server = _grpc_server(*args, **kwargs)
    add_port = server.add_insecure_port
    server.add_insecure_port = lambda address: add_port(address.replace("[::]", "127.0.0.1"))
    return server


def main() -> None:
    port, queues = int(sys.argv[1]), sys.argv[2].split(",")
    max_retries = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    logging.basicConfig(level=logging.WARNING, format="tasks-emulator %(levelname)s %(message)s")
    grpc.server = _loopback_server
    create_server("127.0.0.1", port, default_queue_names=queues, max_retries=max_retries).run()


if __name__ == "__main__":
    main()
