"""The NetBox benchmark: the Rust NetBox component, the Python one and
pynetbox against the same NetBox emulator, on the same data, in one run.

Run by bench/netbox.sh, which builds what it needs. Prints a Markdown table
of medians and writes bench/netbox-results.json.

What it measures (each RUNS times, medians):
- full syncs of all three streams by the Rust component in the release host,
  with 4 partitions and with 1 (concurrency 1, so each stream's seconds are
  its own), and pynetbox reading the same three endpoints (limit=1000);
- devices only: the Rust component (`sync --stream devices`) and the Python
  one, each with one partition (their stream's seconds from the report), and
  pynetbox's devices;
- component size, and cold start: `info` with no compiled-component cache
  (cranelift compiles the component) and with a warm one.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

V2_TOKEN = "nbt_8Hk2qT4mZx.Wc9vJr3LpN7sYd2FgA6hUe1KoBi5XtMq"


CPU = {}  # command line → CPU seconds (user + system) of its last run


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (seconds, max RSS MiB, stdout)
    and keeps the process's CPU seconds in CPU[' '.join(cmd)]."""
    with tempfile.NamedTemporaryFile("r") as usage:
        start = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", usage.name] + cmd,
                             env=env, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        rss, user, system = usage.read().split()[-3:]
        CPU[" ".join(cmd)] = float(user) + float(system)
        return seconds, int(rss) / 1024, out.stdout


def cpu_of(row):
    """The CPU seconds a (seconds, rss, result, cpu) row recorded."""
    return row[3]


def config(directory, url, plugin, partitions):
    component = f'plugin = "{plugin}"' if plugin else 'connector = "netbox"'
    path = os.path.join(directory, f"nb-{os.urandom(4).hex()}.toml")
    with open(path, "w") as f:
        f.write(f'{component}\ndatabase = "{path}.db"\n[settings]\nurl = "{url}"\n'
                f'[auth]\nmethod = "api-key"\napi_key_env = "NETBOX_TOKEN"\n'
                f'[sync]\npartitions = {partitions}\nconcurrency = {max(partitions, 1)}\npage_size = 1000\n')
    return path


def sync(host, cfg, env, streams=()):
    only = [arg for stream in streams for arg in ("--stream", stream)]
    cmd = [host, "sync", "--full", "--json", "--config", cfg] + only
    seconds, rss, out = timed(cmd, env)
    report = json.loads(out)
    streams = {s["stream"]: (sum(p["records"] for p in s["partitions"]), s["seconds"]) for s in report["streams"]}
    return seconds, rss, streams, CPU[" ".join(cmd)]


def pynetbox_read(python, url, endpoints):
    script = (
        "import sys, time, pynetbox\n"
        f"api = pynetbox.api({url!r}, token={V2_TOKEN!r})\n"
        "n = 0\n"
        "for app, name in [e.split('.') for e in sys.argv[1:]]:\n"
        "    n += sum(1 for _ in getattr(getattr(api, app), name).all(limit=1000))\n"
        "print(n)\n"
    )
    cmd = [python, "-c", script] + endpoints
    seconds, rss, out = timed(cmd)
    return seconds, rss, int(out.strip()), CPU[" ".join(cmd)]


def median(values):
    return statistics.median(values)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--emulator", required=True)
    p.add_argument("--python", required=True, help="a Python with pynetbox")
    p.add_argument("--python-component", required=True)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    args.python_component = os.path.abspath(args.python_component)
    return args


def measure(args, url, env, work):
    """Every row's runs, then `info`'s cold start without and with the compiled cache."""
    rows = {k: [] for k in ("rust4", "rust1", "rust_devices", "python", "pynetbox_all", "pynetbox_devices")}
    for _ in range(args.runs):
        rows["rust4"].append(sync(args.host, config(work, url, None, 4), env))
        rows["rust1"].append(sync(args.host, config(work, url, None, 1), env))
        rows["rust_devices"].append(sync(args.host, config(work, url, None, 1), env, ["devices"]))
        rows["python"].append(sync(args.host, config(work, url, args.python_component, 1), env))
        rows["pynetbox_all"].append(pynetbox_read(args.python, url, ["dcim.devices", "dcim.interfaces", "ipam.ip_addresses"]))
        rows["pynetbox_devices"].append(pynetbox_read(args.python, url, ["dcim.devices"]))
    cold = {}
    for name, which in (("rust", ["--connector", "netbox"]), ("python", ["--plugin", args.python_component])):
        no_cache = dict(env, CONNECTOR_HOST_CACHE_DIR="")
        cache = os.path.join(work, f"cache-{name}")
        warm_env = dict(env, CONNECTOR_HOST_CACHE_DIR=cache)
        timed([args.host, "info"] + which, warm_env)  # fills the cache
        cold[name] = (median([timed([args.host, "info"] + which, no_cache)[0] for _ in range(args.runs)]),
                      median([timed([args.host, "info"] + which, warm_env)[0] for _ in range(args.runs)]))
    return rows, cold


def summarize(args, rows, cold):
    """The medians `netbox-results.json` holds."""
    records_all = sum(n for n, _ in rows["rust4"][0][2].values())
    return {
        "devices": args.devices,
        "runs": args.runs,
        "records_all_streams": records_all,
        "rust_4_partitions_s": median([r[0] for r in rows["rust4"]]),
        "rust_4_partitions_rss_mib": median([r[1] for r in rows["rust4"]]),
        "rust_1_partition_s": median([r[0] for r in rows["rust1"]]),
        "pynetbox_all_s": median([r[0] for r in rows["pynetbox_all"]]),
        "pynetbox_all_rss_mib": median([r[1] for r in rows["pynetbox_all"]]),
        "pynetbox_all_records": rows["pynetbox_all"][0][2],
        "rust_devices_s": median([r[0] for r in rows["rust_devices"]]),
        "rust_devices_stream_s": median([r[2]["devices"][1] for r in rows["rust_devices"]]),
        "rust_devices_rss_mib": median([r[1] for r in rows["rust_devices"]]),
        "python_devices_s": median([r[0] for r in rows["python"]]),
        "python_devices_stream_s": median([r[2]["devices"][1] for r in rows["python"]]),
        "python_devices_rss_mib": median([r[1] for r in rows["python"]]),
        "python_devices_records": rows["python"][0][2]["devices"][0],
        "pynetbox_devices_s": median([r[0] for r in rows["pynetbox_devices"]]),
        "devices_records": rows["rust4"][0][2]["devices"][0],
        "cpu_s": {name: median([cpu_of(r) for r in rows[name]]) for name in rows},
        "size_python_bytes": os.path.getsize(args.python_component),
        "cold_start_s": {k: {"no_cache": v[0], "cached": v[1]} for k, v in cold.items()},
    }


def print_table(r):
    """The results as BENCHMARKS.md's table."""
    cpu = r["cpu_s"]
    records_all, devices = r["records_all_streams"], r["devices_records"]
    print(f"| What (NetBox emulator, {r['devices']:,} devices, median of {r['runs']}) | Time | Records/s | Client CPU | Max RSS |")
    print("|---|---|---|---|---|")
    print(f"| All streams, Rust component, 4 partitions | {r['rust_4_partitions_s']:.2f} s | {records_all / r['rust_4_partitions_s']:,.0f} | {cpu['rust4']:.1f} s | {r['rust_4_partitions_rss_mib']:.0f} MiB |")
    print(f"| All streams, Rust component, 1 partition | {r['rust_1_partition_s']:.2f} s | {records_all / r['rust_1_partition_s']:,.0f} | {cpu['rust1']:.1f} s | |")
    print(f"| All streams, pynetbox (limit=1000) | {r['pynetbox_all_s']:.2f} s | {r['pynetbox_all_records'] / r['pynetbox_all_s']:,.0f} | {cpu['pynetbox_all']:.1f} s | {r['pynetbox_all_rss_mib']:.0f} MiB |")
    print(f"| Devices, Rust component (`sync --stream devices`, 1 partition; whole sync {r['rust_devices_s']:.2f} s) | {r['rust_devices_stream_s']:.2f} s | {devices / r['rust_devices_stream_s']:,.0f} | {cpu['rust_devices']:.1f} s | {r['rust_devices_rss_mib']:.0f} MiB |")
    print(f"| Devices, Python component (1 partition; whole sync {r['python_devices_s']:.2f} s) | {r['python_devices_stream_s']:.2f} s | {r['python_devices_records'] / r['python_devices_stream_s']:,.0f} | {cpu['python']:.1f} s | {r['python_devices_rss_mib']:.0f} MiB |")
    print(f"| Devices, pynetbox | {r['pynetbox_devices_s']:.2f} s | {devices / r['pynetbox_devices_s']:,.0f} | {cpu['pynetbox_devices']:.1f} s | |")
    for k, v in r["cold_start_s"].items():
        print(f"| `info`, {k} component: no compiled cache / cached | {v['no_cache']:.2f} s / {v['cached']:.2f} s | | | |")
    print(f"| Python component size | {r['size_python_bytes'] / 1e6:.1f} MB | | | |")


def main():
    args = parse_args()
    emulator = subprocess.Popen([args.emulator, "--devices", str(args.devices), "--listen", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, text=True)
    url = emulator.stdout.readline().strip().split()[-1]
    env = dict(os.environ, NETBOX_TOKEN=V2_TOKEN)
    try:
        with tempfile.TemporaryDirectory() as work:
            rows, cold = measure(args, url, env, work)
    finally:
        emulator.terminate()
        emulator.wait()
    results = summarize(args, rows, cold)
    json.dump(results, open(os.path.join(os.path.dirname(__file__), "netbox-results.json"), "w"), indent=2)
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
