#!/usr/bin/env python3
"""Where a held poll's memory goes: starts `talk serve` (pinned to core 1),
opens N connections and measures the server's RSS after each step: the bare
connections, one finished request on each, a session each, and a held poll
on each. With `hyper` as the third argument, each connection first fetches
`/talk.js`, as a browser that loads the widget and then reuses that
keep-alive connection for its polls: the server hands such a connection to
hyper, which then holds its polls. Usage: memory-breakdown.py [N] [path to
talk] [lean|hyper]."""
import socket, subprocess, time, re, json, resource, tempfile, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
TALK = sys.argv[2] if len(sys.argv) > 2 else "target/release/talk"
FRONT = sys.argv[3] if len(sys.argv) > 3 else "lean"
data = tempfile.mkdtemp()
srv = subprocess.Popen(["taskset","-c","1",TALK,"serve","--listen","127.0.0.1:0","--data",data,"--session-rate","0","--send-rate","0","--channel-rate","0","--channel-address-rate","0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
while True:
    line = srv.stdout.readline()
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if m: break
port = int(m.group(1))
def rss():
    for l in open(f"/proc/{srv.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
def req(s, method, path, body=b""):
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
def read_answer(s):
    buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(rest) < n: rest += s.recv(65536)
    return rest
time.sleep(0.5)
out = {"base": rss()}
# 1. connections only
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(N)]
time.sleep(1); out["connected"] = rss()
if FRONT == "hyper":
    for s in socks: req(s, "GET", "/talk.js")
    for s in socks: read_answer(s)
# 2. one finished chat request each (idle keep-alive): a poll with a token
# the server does not know, answered at once with 401
for s in socks: req(s, "POST", "/poll", b'{"token":"none"}')
for s in socks: read_answer(s)
time.sleep(1); out["after_one_request"] = rss()
# 3. a session each and a held poll on the same connection
for i, s in enumerate(socks):
    req(s, "POST", "/broadcast", json.dumps({"op":"start","name":f"m{i}","channel":"mem"}).encode())
tokens = [json.loads(read_answer(s))["token"] for s in socks]
time.sleep(1); out["sessions"] = rss()
for s, t in zip(socks, tokens):
    req(s, "POST", "/poll", json.dumps({"token": t}).encode())
firsts = [json.loads(read_answer(s)) for s in socks]
for s, t, f in zip(socks, tokens, firsts):
    req(s, "POST", "/poll", json.dumps({"token": t, "channel": f["channel"], "cursor": f["cursor"]}).encode())
time.sleep(2); out["held_polls"] = rss()
srv.kill(); srv.wait()
subprocess.run(["rm", "-rf", data])
print(json.dumps(out))
per = lambda a, b: round((out[b] - out[a]) / N, 2)
print("KiB per connection: connect", per("base","connected"), "| after a request", per("connected","after_one_request"), "| session", per("after_one_request","sessions"), "| held poll", per("sessions","held_polls"), "| total", per("base","held_polls"))
