#!/usr/bin/env python3
"""The least any server pays per answer on this machine's loopback TCP.

A writer pinned to core 0 (where the benches pin the server) holds N
accepted connections; a reader pinned to core 1 (the bench's core) holds
their other ends. Every 500 ms, 20 times (a 2 msgs/s fan-out's bursts),
the writer sends one answer-sized write to each connection in turn, as a
server answers N held polls, and times the burst, with its own CPU split
into kernel and user time from getrusage.

Nothing is parsed, encoded or looked up: what the writer spends is the
kernel's one send(2) per answer, which on loopback includes the receive
side of the reader's socket (the kernel processes it on the sending
core). The reader sweeps its sockets every 50 ms instead of waiting in
epoll, so no arriving answer wakes it: a reader woken per answer (as a
bench that has gone idle is) costs the sending core more. A server that
writes one answer per held poll therefore cannot finish a burst sooner
than this, and the time to the 99th percent of a burst's sends is a
floor under a fan-out's p99 on the same machine.

    python3 bench/scripts/loopback-floor.py 5000
    python3 bench/scripts/loopback-floor.py 19000 431

Prints a summary and one JSON line. Needs two cores and room for N+1
descriptors in each process (19,000 fit the open-files limit of 20,000).
"""

import json
import os
import resource
import signal
import socket
import statistics
import sys
import time

BURSTS = 20
INTERVAL_SECS = 0.5
# The reader gives up this long after the last burst was due, so that a
# run always ends.
READER_GRACE_SECS = 60
# How long the reader sleeps between its sweeps of every socket.
SWEEP_PAUSE_SECS = 0.05


def main():
    n_connections = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    answer_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 431
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if n_connections + 64 > hard:
        sys.exit(f"{n_connections} connections need more than the open-files limit of {hard}")
    os.sched_setaffinity(0, {0})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    # A reader that cannot connect must not leave the writer waiting.
    listener.settimeout(60)
    port = listener.getsockname()[1]
    reader_pid = os.fork()
    if reader_pid == 0:
        listener.close()
        os.sched_setaffinity(0, {1})
        read_everything(port, n_connections, n_connections * BURSTS * answer_bytes)
        os._exit(0)
    try:
        result = write_bursts(listener, n_connections, answer_bytes)
    finally:
        # The reader ends by itself once it has read everything; this is
        # for a writer that failed half-way.
        try:
            os.kill(reader_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        os.waitpid(reader_pid, 0)
    print(
        f"loopback floor, {n_connections} connections, {BURSTS} bursts of "
        f"{answer_bytes}-byte sends 500 ms apart (medians): "
        f"{result['send_us']:.2f} µs per send ({result['kernel_us']:.2f} kernel, "
        f"{result['user_us']:.2f} user); 99% of a burst sent after "
        f"{result['p99_sent_ms']:.1f} ms, all after {result['span_ms']:.1f} ms"
    )
    print(json.dumps(result))


def write_bursts(listener, n_connections, answer_bytes):
    connections = []
    while len(connections) < n_connections:
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections.append(connection)
    answer = b"x" * answer_bytes
    # The first 99% of the connections, and the rest: timed apart, so that
    # the loop itself checks nothing per send.
    first_99 = connections[: max(1, int(n_connections * 0.99))]
    last_1 = connections[len(first_99) :]
    load_average = os.getloadavg()[0]
    time.sleep(1)
    sends, kernels, users, p99s, spans = [], [], [], [], []
    for _ in range(BURSTS):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        for connection in first_99:
            connection.sendall(answer)
        p99_at = time.perf_counter()
        for connection in last_1:
            connection.sendall(answer)
        end = time.perf_counter()
        after = resource.getrusage(resource.RUSAGE_SELF)
        sends.append((end - start) / n_connections * 1e6)
        kernels.append((after.ru_stime - before.ru_stime) / n_connections * 1e6)
        users.append((after.ru_utime - before.ru_utime) / n_connections * 1e6)
        p99s.append((p99_at - start) * 1e3)
        spans.append((end - start) * 1e3)
        time.sleep(INTERVAL_SECS)
    return {
        "scenario": "loopback_floor",
        # How the reader reads: it sweeps its sockets (see read_everything).
        "reader": "sweep",
        "connections": n_connections,
        "answer_bytes": answer_bytes,
        "bursts": BURSTS,
        "send_us": statistics.median(sends),
        "kernel_us": statistics.median(kernels),
        "user_us": statistics.median(users),
        "p99_sent_ms": statistics.median(p99s),
        "span_ms": statistics.median(spans),
        "load_average": load_average,
        "unix_time": int(time.time()),
    }


def read_everything(port, n_connections, expected_bytes):
    connections = []
    for _ in range(n_connections):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.setblocking(False)
        connections.append(connection)
    received = 0
    deadline = time.monotonic() + 2 + BURSTS * INTERVAL_SECS + READER_GRACE_SECS
    while received < expected_bytes and time.monotonic() < deadline:
        # Sweeps every socket, then sleeps: nobody waits on a socket, so
        # an arriving answer wakes no one and the writer's core pays only
        # for sending and receiving it.
        for connection in connections:
            try:
                while True:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    received += len(chunk)
            except BlockingIOError:
                pass
        time.sleep(SWEEP_PAUSE_SECS)


if __name__ == "__main__":
    main()
