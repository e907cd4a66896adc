"""Bounded load test of `mila-infer serve` on loopback.

python load.py --url 127.0.0.1:8000 --model digits --images a.png b.jpg --clients 4 --seconds 20 \
    [--max-requests 20000] [--metrics 127.0.0.1:8002] [--pid PID]

N client threads send infer requests (one encoded image each, Triton's binary tensor extension,
the top class back as BYTES) for M seconds or until --max-requests, whichever comes first, on
127.0.0.1 only. Prints one JSON object: requests, failures, throughput, latency percentiles, the
batch-size distribution from the server's metrics (mila_batch_size), and the server's resident
memory sampled every 0.5 s (first, max, last; --pid).
"""
import argparse
import http.client
import json
import struct
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--url", required=True)
parser.add_argument("--model", required=True)
parser.add_argument("--images", nargs="+", required=True)
parser.add_argument("--clients", type=int, default=4)
parser.add_argument("--seconds", type=float, default=20)
parser.add_argument("--max-requests", type=int, default=100000)
parser.add_argument("--metrics")
parser.add_argument("--pid", type=int)
args = parser.parse_args()
host, port = args.url.split(":")
assert host in ("127.0.0.1", "localhost", "::1"), "loopback only"

bodies = []
for path in args.images:
    data = open(path, "rb").read()
    header = json.dumps({
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(data) + 4}}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 1, "binary_data": False}}],
    }).encode()
    bodies.append((header + struct.pack("<I", len(data)) + data, len(header)))

lock = threading.Lock()
latencies, failures, sent = [], [0], [0]
deadline = time.monotonic() + args.seconds


def client(k):
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    i = k
    while time.monotonic() < deadline:
        with lock:
            if sent[0] >= args.max_requests:
                return
            sent[0] += 1
        body, n = bodies[i % len(bodies)]
        i += 1
        start = time.perf_counter()
        try:
            connection.request("POST", f"/v2/models/{args.model}/infer", body=body,
                               headers={"Inference-Header-Content-Length": str(n)})
            response = connection.getresponse()
            payload = response.read()
            ok = response.status == 200 and b"probabilities" in payload
        except Exception:
            ok = False
            connection = http.client.HTTPConnection(host, int(port), timeout=60)
        elapsed = time.perf_counter() - start
        with lock:
            if ok:
                latencies.append(elapsed)
            else:
                failures[0] += 1


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


memory = []
stop = threading.Event()


def sampler():
    while not stop.is_set():
        memory.append(rss_kib(args.pid))
        stop.wait(0.5)


if args.pid:
    threading.Thread(target=sampler, daemon=True).start()
began = time.monotonic()
threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.monotonic() - began
stop.set()

latencies.sort()


def percentile(p):
    return 1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else None


result = {
    "clients": args.clients, "seconds": round(wall, 2), "requests": len(latencies) + failures[0], "failures": failures[0],
    "throughput_per_s": round(len(latencies) / wall, 2),
    "latency_ms": {"p50": percentile(50), "p90": percentile(90), "p99": percentile(99), "max": 1000 * latencies[-1] if latencies else None},
}
if args.metrics:
    connection = http.client.HTTPConnection(*args.metrics.split(":"))
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    buckets, previous = {}, 0
    for line in text.splitlines():
        if line.startswith("mila_batch_size_bucket"):
            le = line.split('le="')[1].split('"')[0]
            count = int(float(line.split()[-1]))
            if le != "+Inf":
                buckets[int(float(le))] = count - previous
                previous = count
        for name in ("mila_inference_count", "mila_inference_exec_count", "mila_inference_request_failure"):
            if line.startswith(name + "{"):
                result[name] = float(line.split()[-1])
    result["batch_sizes"] = {k: v for k, v in buckets.items() if v}
if memory:
    result["server_rss_mib"] = {"first": round(memory[0] / 1024, 1), "max": round(max(memory) / 1024, 1), "last": round(memory[-1] / 1024, 1)}
print(json.dumps(result))
