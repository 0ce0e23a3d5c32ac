"""Splits a perf recording of the server's core into a fan-out's two phases.

Reads `perf script -F event,ip,sym` of a recording with call graphs, CPU
samples and the sendto/recvfrom tracepoints (burst-phases.sh makes one).
A CPU sample belongs to the answer phase when the last system call before
it was a sendto, and to the poll phase when it was a recvfrom: during a
burst the server writes its answers back to back and reads the next polls
only afterwards, so the two phases hardly mix. For each phase it prints
the CPU time per system call, where that time went, and the functions
the samples fell in most (their own time, not their callees').

    perf script -i perf.data -F event,ip,sym | python3 burst-phases.py 100

The argument is the CPU sampling period in microseconds.
"""

import collections
import sys

# The phase each traced system call starts, and the call's name.
PHASES = {"sys_enter_sendto": ("answer", "sendto"), "sys_enter_recvfrom": ("poll", "recvfrom")}
# Samples left out of the figures: the core idle, and perf's own work.
NOT_COUNTED = ("idle", "tracing")
# How many of each phase's busiest functions to print.
TOP_FUNCTIONS = 15


def place(frames):
    """Where a sample's time went, by the frames of its call graph."""
    stack = " ".join(frames)
    if "do_idle" in stack:
        return "idle"
    # perf's own work at each traced system call, left out of the figures.
    if "perf_syscall_enter" in stack or "perf_tp_event" in stack:
        return "tracing"
    for syscall, name in (
        ("__x64_sys_sendto", "kernel: sendto"),
        ("__x64_sys_recvfrom", "kernel: recvfrom"),
        ("epoll_wait", "kernel: epoll_wait"),
    ):
        if syscall in stack:
            return name
    if "entry_SYSCALL" in stack:
        return "kernel: other system calls"
    if "handle_softirqs" in stack or "asm_sysvec" in stack:
        return "kernel: interrupts"
    return "user space"


def main():
    period_us = float(sys.argv[1]) if len(sys.argv) > 1 else 100.0
    places = {phase: collections.Counter() for phase, _ in PHASES.values()}
    functions = {phase: collections.Counter() for phase, _ in PHASES.values()}
    calls = collections.Counter()
    phase = None
    block = []

    def take(block):
        nonlocal phase
        if not block:
            return
        event = block[0]
        for tracepoint, (name, _) in PHASES.items():
            if tracepoint in event:
                phase = name
                calls[name] += 1
                return
        if "cpu-clock" in event and phase:
            frames = [line.split(None, 1)[-1] for line in block[1:]]
            where = place(frames)
            places[phase][where] += 1
            if where not in NOT_COUNTED and frames:
                functions[phase][frames[0]] += 1

    for line in sys.stdin:
        if line.strip():
            block.append(line.strip())
        else:
            take(block)
            block = []
    take(block)

    for phase, syscall in PHASES.values():
        counts = places[phase]
        busy = sum(n for where, n in counts.items() if where not in NOT_COUNTED)
        if not busy or not calls[phase]:
            print(f"{phase} phase: no samples")
            continue
        per_call = busy * period_us / calls[phase]
        print(
            f"{phase} phase: {calls[phase]} {syscall} calls, "
            f"{per_call:.1f} µs of CPU per call"
        )
        for where, n in counts.most_common():
            if where not in NOT_COUNTED:
                print(f"  {100 * n / busy:5.1f}%  {where}")
        print(f"  the {TOP_FUNCTIONS} functions with the most samples of their own:")
        for function, n in functions[phase].most_common(TOP_FUNCTIONS):
            print(f"  {100 * n / busy:5.1f}%    {function[:100]}")


if __name__ == "__main__":
    main()
