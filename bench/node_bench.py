"""The second-runtime benchmark: the same ServiceNow component read under
wasmtime (the release `connector-host`) and under jco on Node
(`hosts/node/connector.mjs`), from the same emulator, in one run.

Run by bench/node.sh, which builds and installs what it needs. Prints a
Markdown table of medians and writes bench/node-results-<N>p.json.

What it measures (each RUNS times, medians, alternating the two hosts):
- `devices` read with 4 partitions (`--partitions N`): `connector-host sync --full --stream
  devices` (which also writes SQLite) against `node connector.mjs read
  --stream devices` (which keeps the records in memory and prints them in
  key order). Wall seconds, CPU seconds and peak RSS of the process.
- before timing, that Node's records equal `connector-host export`'s;
- Node's cold start: the first `info` with an empty transpilation cache
  (jco transpiles) and a warm one.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

PASSWORD = "exposure"


def timed(cmd, env):
    """(wall seconds, CPU seconds, max RSS MiB, stdout) of one run."""
    with tempfile.NamedTemporaryFile("r") as usage:
        start = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", usage.name] + cmd,
                             env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        rss, user, system = usage.read().split()[-3:]
        return seconds, float(user) + float(system), int(rss) / 1024, out.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--emulator", required=True)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="node-bench-")
    env = dict(os.environ, SN_PASSWORD=PASSWORD, CONNECTOR_NODE_CACHE=os.path.join(work, "cache"))
    emulator = subprocess.Popen([args.emulator, "--devices", str(args.devices), "--listen", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, text=True)
    try:
        url = emulator.stdout.readline().strip().split()[-1]
        component = os.path.join(work, "servicenow.wasm")
        subprocess.run([args.host, "component", "--out", component], check=True, capture_output=True)
        cfg = os.path.join(work, "sn.toml")
        with open(cfg, "w") as f:
            f.write(f'database = "{work}/sn.db"\n[settings]\ninstance = "{url}"\n'
                    '[auth]\nmethod = "basic"\nusername = "svc_exposure"\npassword_env = "SN_PASSWORD"\n'
                    f'[sync]\npartitions = {args.partitions}\nconcurrency = {args.partitions}\npage_size = 2000\n')
        node = ["node", "hosts/node/connector.mjs"]
        cold = timed(node + ["info", "--component", component], env)[0]
        warm = timed(node + ["info", "--component", component], env)[0]
        wasmtime_cmd = [args.host, "sync", "--full", "--stream", "devices", "--config", cfg]
        node_cmd = node + ["read", "--component", component, "--config", cfg, "--stream", "devices"]
        timed(wasmtime_cmd, env)
        exported = timed([args.host, "export", "--config", cfg, "--stream", "devices"], env)[3]
        read = timed(node_cmd, env)[3]
        assert read == exported, "Node's records differ from connector-host's export"
        rows = {"wasmtime": [], "node": []}
        for _ in range(args.runs):
            rows["wasmtime"].append(timed(wasmtime_cmd, env)[:3])
            rows["node"].append(timed(node_cmd, env)[:3])
    finally:
        emulator.kill()
    median = {name: [statistics.median(r[i] for r in runs) for i in range(3)] for name, runs in rows.items()}
    ratio = median["node"][0] / median["wasmtime"][0]
    records = exported.count(b"\n")
    print(f"{records} devices, {args.partitions} partitions, page size 2000, median of {args.runs} runs\n")
    print("| runtime | wall s | CPU s | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    for name, label in [("wasmtime", "wasmtime 48 (`connector-host sync`, writes SQLite)"),
                        ("node", "jco on Node 20 (`connector.mjs read`, prints JSON lines)")]:
        wall, cpu, rss = median[name]
        print(f"| {label} | {wall:.1f} | {cpu:.1f} | {rss:.0f} |")
    print(f"\nNode / wasmtime wall time: {ratio:.2f}. Node cold start (jco transpile): {cold:.2f} s, warm: {warm:.2f} s.")
    with open(f"bench/node-results-{args.partitions}p.json", "w") as f:
        json.dump({"devices": records, "partitions": args.partitions, "runs": rows, "median": median, "ratio": ratio,
                   "node_cold_info_s": cold, "node_warm_info_s": warm}, f, indent=1)


if __name__ == "__main__":
    main()
