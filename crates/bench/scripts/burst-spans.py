"""Times each burst of a fan-out on the server's core, from a perf recording.

Reads `perf script -F comm,pid,tid,cpu,time,event,trace` of a recording of
both cores with the sendto and recvfrom tracepoints and sched_switch
(burst-spans.sh makes one). The server's poll answers are its sendto calls
of about the length it writes most often (every answer of a fan-out carries
one bench message; cursors and sequence numbers grow by a digit now and
then); answers less than 100 ms apart are one burst. The bench has read an
answer when one of its recvfrom calls returns about that many bytes. For
each burst it prints:

- lead: from the server reading the send request to its first answer (the
  commit, waking the held polls, the acknowledgement);
- span: from the first answer to the last;
- bench behind: from the server's last answer to the bench's last read of
  one, the part of the latency that is the bench's own queueing;
- the longest pause between two answers, and what else ran on the server's
  core during pauses over 300 µs (another process taking it shows here).

    perf script -i perf.data -F comm,pid,tid,cpu,time,event,trace | python3 burst-spans.py <server pid>
"""

import re
import statistics
import sys

LINE = re.compile(r"\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)")
BURST_GAP_S = 0.1
PAUSE_S = 300e-6
ANSWER_LENGTH_SLACK = 8


def arg(trace, name):
    """A tracepoint argument, as an integer."""
    found = re.search(name + r": (0x[0-9a-f]+)", trace)
    return int(found.group(1), 16) if found else None


def read_events(lines, server_pid):
    """(time, kind, fd, length, detail) of the server's calls, the bench's
    reads and the switches on the server's core (core 0)."""
    events = []
    for line in lines:
        match = LINE.match(line)
        if not match:
            continue
        _comm, pid, _tid, cpu, time, event, trace = match.groups()
        time = float(time)
        if event.endswith("sched_switch"):
            if int(cpu) == 0:
                events.append((time, "switch", None, None, trace.split("==>")[-1].split()[0]))
        elif int(pid) != server_pid:
            returned = re.search(r"(0x[0-9a-f]+)\s*$", trace)
            if event.endswith("sys_exit_recvfrom") and returned:
                events.append((time, "bench read", None, int(returned.group(1), 16), None))
        elif event.endswith("sys_enter_sendto"):
            events.append((time, "send", arg(trace, "fd"), arg(trace, "len"), None))
        elif event.endswith("sys_enter_recvfrom"):
            events.append((time, "recv", arg(trace, "fd"), None, None))
    return events


def is_answer_length(length, answer_length):
    """True for the length of a message's answer: the most common one, give
    or take the digits of a growing cursor and sequence number."""
    return length is not None and abs(length - answer_length) <= ANSWER_LENGTH_SLACK


def bursts_of(events):
    """Lists of event indexes, one list of answers per burst."""
    lengths = [length for _, kind, _, length, _ in events if kind == "send"]
    answer_length = statistics.mode(lengths)
    bursts, last = [], None
    for index, (time, kind, _, length, _) in enumerate(events):
        if kind != "send" or not is_answer_length(length, answer_length):
            continue
        if last is None or time - last > BURST_GAP_S:
            bursts.append([])
        bursts[-1].append(index)
        last = time
    return bursts, answer_length


def lead_time(events, first, answer_length):
    """From reading the send request to the first answer, if the request is found.

    The send's acknowledgement is the server's other sendto nearest the
    burst's start; its request is the last read on that connection before.
    """
    start = events[first][0]
    acks = [
        (abs(time - start), fd)
        for time, kind, fd, length, _ in events
        if kind == "send" and not is_answer_length(length, answer_length) and abs(time - start) < 0.005
    ]
    if not acks:
        return None
    ack_fd = min(acks)[1]
    reads = [time for time, kind, fd, _, _ in events[:first] if kind == "recv" and fd == ack_fd]
    return start - reads[-1] if reads else None


def main():
    server_pid = int(sys.argv[1])
    events = read_events(sys.stdin, server_pid)
    bursts, answer_length = bursts_of(events)
    bursts = [burst for burst in bursts if len(burst) > 1]
    print(f"{len(bursts)} bursts of answers of {answer_length} bytes")
    bench_reads = [time for time, kind, _, length, _ in events
                   if kind == "bench read" and is_answer_length(length, answer_length)]
    leads, spans, behinds = [], [], []
    for number, burst in enumerate(bursts, 1):
        times = [events[index][0] for index in burst]
        lead = lead_time(events, burst[0], answer_length)
        span = times[-1] - times[0]
        pauses = [(later - earlier, a, b) for (earlier, a), (later, b) in
                  zip(zip(times, burst), zip(times[1:], burst[1:]))]
        longest = max(pauses)[0] if pauses else 0.0
        others = set()
        for pause, a, b in pauses:
            if pause > PAUSE_S:
                others.update(detail for _, kind, _, _, detail in events[a:b] if kind == "switch")
        lead_text = f"{lead * 1e3:5.2f} ms" if lead is not None else "    n/a"
        read = [time for time in bench_reads if times[0] <= time < times[-1] + BURST_GAP_S]
        behind = read[-1] - times[-1] if read else None
        behind_text = f"{behind * 1e3:5.2f} ms" if behind is not None else "    n/a"
        ran = f", the core also ran: {', '.join(sorted(others))}" if others else ""
        print(f"burst {number:3}: {len(burst):6} answers, lead {lead_text}, span {span * 1e3:7.2f} ms, "
              f"bench behind {behind_text}, longest pause {longest * 1e6:6.0f} µs{ran}")
        spans.append(span)
        if lead is not None:
            leads.append(lead)
        if behind is not None:
            behinds.append(behind)
    if spans:
        print(f"median span {statistics.median(spans) * 1e3:.2f} ms (max {max(spans) * 1e3:.2f}), "
              f"median per answer {statistics.median(s / len(b) for s, b in zip(spans, bursts)) * 1e6:.1f} µs")
    for name, values in (("lead", leads), ("bench behind", behinds)):
        if values:
            print(f"median {name} {statistics.median(values) * 1e3:.2f} ms (max {max(values) * 1e3:.2f})")


if __name__ == "__main__":
    main()
