#!/usr/bin/env python3
"""Every frontend beside the CLI, in one run on one local devgrid (issue 17's targets).

For each size (default 128 MiB and 1 GiB) and each round, one upload and one download through:
`tessera put`/`get` (the CLI, over the gateway's web API), curl `PUT /uri` / `GET /uri/CAP`,
OpenSSH `sftp`, curl FTP and curl WebDAV. Every upload is of fresh bytes (convergence would find
the previous one), every download is compared with what was uploaded. For each transfer it prints
the rate, the gateway's peak RSS during that transfer alone (VmHWM, reset through
/proc/PID/clear_refs before it), and the CPU time the gateway and the ten storage nodes spent on
it per MiB (utime + stime from /proc/PID/stat), and the client's (curl, `sftp`, `tessera`: the
children's rusage). Then the best rate of each frontend as a share of the CLI's, the gateway's idle
RSS (before and after), and the disk's bound for uploads (its fsync'd write rate divided by the
N/k expansion, as every share lands on this one disk). Client, gateway and servers share this
machine's cores, so a frontend's rate cannot pass its cores' worth of CPU seconds divided by its
CPU per MiB (all three parts counted): where that bound is below the CLI's rate, the summary prints
it as a share of the CLI's rate ("CPU allows").

Usage: tests/bench/frontends.py [path/to/tessera] [--sizes-mib 128,1024] [--rounds 2]
Each round stores each size five times (about 3.4 times its size each, with 3-of-10 shares):
1 GiB and 128 MiB, two rounds, take about 43 GB of disk under $BENCH_DIR (default: the current
directory); the script says so and stops at once when there is less.
"""

import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")
TARGETS = {  # share of the CLI's rate
    ("put", "web"): 90, ("put", "sftp"): 85, ("put", "ftp"): 85, ("put", "webdav"): 85,
    ("get", "web"): 85, ("get", "sftp"): 85, ("get", "ftp"): 85, ("get", "webdav"): 85,
}
CPU_TARGET_MS_PER_MIB = 10
PEAK_RSS_TARGET_MIB = 64
IDLE_RSS_TARGET_MIB = 32
WEB_UPLOAD_TARGET_MIB_S = 120


def pids_under(directory):
    """Processes whose command line names `directory` (the devgrid's nodes), by node name."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        for arg in args:
            text = arg.decode(errors="replace")
            if text.startswith(directory + "/"):
                found[os.path.basename(text.rstrip("/"))] = int(entry)
    return found


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class Grid:
    def __init__(self, tessera, work):
        self.tessera, self.work = tessera, work
        self.log = open(os.path.join(work, "devgrid.log"), "w")
        # Port 0 everywhere: each server binds any free port itself and writes its URL file (a
        # port picked here could be taken by a storage node before the gateway binds it).
        self.proc = subprocess.Popen(
            [tessera, "devgrid", "--servers", "10", "--dir", os.path.join(work, "grid"),
             "--web-port", "0", "--sftp-port", "0", "--ftp-port", "0", "--webdav-port", "0"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while "Press Ctrl-C" not in open(self.log.name).read():
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit("devgrid did not start:\n" + open(self.log.name).read())
            time.sleep(0.1)
        self.gw_dir = os.path.join(work, "grid", "gateway")
        port = lambda name: int(re.search(r":(\d+)", open(os.path.join(self.gw_dir, name)).read()).group(1))
        self.web, self.ftp, self.dav = port("node.url"), port("ftp.url"), port("webdav.url")
        text = open(self.log.name).read()
        self.sftp_cmd = re.search(r"sftp -P .*", text).group(0).split()
        self.password = open(os.path.join(self.gw_dir, "private", "demo_ftp_password")).read().strip()
        nodes = pids_under(os.path.join(work, "grid"))
        self.gateway = nodes["gateway"]
        self.servers = [pid for name, pid in nodes.items() if name.startswith("storage")]
        assert len(self.servers) == 10, nodes

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def cpu(self):
        """CPU seconds so far: the gateway's, and the storage nodes' together."""
        return cpu_seconds(self.gateway), sum(cpu_seconds(pid) for pid in self.servers)

    def cli(self, *args, **kw):
        return run([self.tessera, "--node-directory", self.gw_dir, *args], **kw)

    def sftp_batch(self, commands):
        cfg = os.path.join(self.work, "ssh_config")
        open(cfg, "w").close()
        cmd = [self.sftp_cmd[0], "-F", cfg, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
               "-b", "-", *self.sftp_cmd[1:]]
        run(cmd, input=commands)

    def curl(self, *args):
        return run(["curl", "-sS", "--fail", *args])


def run(cmd, **kw):
    """Runs a client to its end; its output, or an exit naming the command and what it printed."""
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def settle(pid, longest=30.0):
    """Waits until the gateway's RSS has not moved for 4 s (its allocator hands freed memory back
    to the system gradually over some ten seconds after a transfer), at most `longest` seconds;
    returns it."""
    deadline = time.monotonic() + longest
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        rss = status_kib(pid, "VmRSS")
        if rss != last:
            last, since = rss, time.monotonic()
        elif time.monotonic() - since >= 4.0:
            break
        time.sleep(0.1)
    return last / 1024


def children_cpu():
    """CPU seconds of the child processes this script has waited for (the clients)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(grid, size, action):
    """Runs `action` from a settled state (dirty pages written out, the gateway's memory handed
    back); returns (seconds, gateway peak RSS MiB, (gateway, servers, client) CPU ms per MiB, what
    `action` returned)."""
    os.sync()
    settle(grid.gateway)
    with open(f"/proc/{grid.gateway}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    cpu = (*grid.cpu(), children_cpu())
    start = time.monotonic()
    result = action()
    seconds = time.monotonic() - start
    peak = status_kib(grid.gateway, "VmHWM") / 1024
    after = (*grid.cpu(), children_cpu())
    cpu_ms = tuple((b - a) * 1000 / (size / MIB) for a, b in zip(cpu, after))
    return seconds, peak, cpu_ms, result


def idle(pid):
    """The gateway's settled RSS in MiB, printed with its anonymous and file-backed parts (the
    file-backed pages are the binary's code, shared with every node of the grid)."""
    rss = settle(pid)
    anon, files = status_kib(pid, "RssAnon") / 1024, status_kib(pid, "RssFile") / 1024
    print(f"gateway idle: RSS {rss:.1f} MiB ({anon:.1f} anonymous, {files:.1f} file-backed)")
    return rss


def disk_bound(work, expansion):
    """This disk's fsync'd write rate (MiB/s) over 256 MiB, divided by the N/k expansion."""
    path = os.path.join(work, "disk-probe")
    chunk = os.urandom(MIB)
    start = time.monotonic()
    with open(path, "wb") as f:
        for _ in range(256):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    rate = 256 / (time.monotonic() - start)
    os.remove(path)
    return rate, rate / expansion


def bump(path, stamp):
    """Makes the input fresh bytes: its first 8 bytes become `stamp`."""
    with open(path, "r+b") as f:
        f.write(f"{stamp:08d}".encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tessera", nargs="?", default="target/release/tessera")
    parser.add_argument("--sizes-mib", default="128,1024")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="cli,web,sftp,ftp,webdav",
                        help="frontends to measure (the CLI is always measured)")
    parser.add_argument("--sftp-cipher", default=None,
                        help="the cipher `sftp` asks for (its `-c`), instead of its default choice")
    args = parser.parse_args()
    tessera = os.path.realpath(args.tessera)
    frontends = ["cli"] + [f for f in args.only.split(",") if f != "cli"]
    work = tempfile.mkdtemp(prefix="tessera-bench-frontends-", dir=os.environ.get("BENCH_DIR", "."))
    work = os.path.realpath(work)
    sizes = [int(x) for x in args.sizes_mib.split(",")]
    # Every transfer's upload stays in the grid: five frontends, 10/3 of each size in shares, plus
    # the input and output files and a spool of the largest size.
    needed = MIB * (args.rounds * len(frontends) * sum(sizes) * 10 / 3 + 3 * max(sizes))
    free = shutil.disk_usage(work).free
    if free < needed:
        shutil.rmtree(work, ignore_errors=True)
        sys.exit(f"these rounds store about {needed / 1e9:.0f} GB of shares under {work}, "
                 f"and {free / 1e9:.0f} GB is free: fewer --rounds or smaller --sizes-mib, or BENCH_DIR elsewhere")
    grid = None
    try:
        grid = Grid(tessera, work)
        if args.sftp_cipher:
            grid.sftp_cmd[1:1] = ["-c", args.sftp_cipher]
        idle_before = idle(grid.gateway)
        disk, bound = disk_bound(work, 10 / 3)
        web = f"http://127.0.0.1:{grid.web}"
        ftp = f"ftp://127.0.0.1:{grid.ftp}"
        dav = f"http://127.0.0.1:{grid.dav}"
        user = f"demo:{grid.password}"
        print(f"10 storage nodes and a gateway (separate processes) on this machine, 3-of-10; "
              f"disk {disk:.0f} MiB/s fsync'd, so uploads are bounded near {bound:.0f} MiB/s")
        print(f"{'size':>6} {'frontend':>8} {'op':>3} {'MiB/s':>7} {'peak RSS':>9} "
              f"{'CPU ms/MiB: gateway + servers':>30} {'client':>6}")
        best = {}  # (size, op, frontend) -> (rate, peak, gateway + servers CPU, all CPU)
        stamp = 0
        for size_mib in sizes:
            size = size_mib * MIB
            source = os.path.join(work, "input")
            with open(source, "wb") as f:
                for _ in range(size_mib):
                    f.write(os.urandom(MIB))
            out = os.path.join(work, "output")
            for rnd in range(args.rounds):
                for fe in frontends:
                    stamp += 1
                    bump(source, stamp)
                    name = f"{fe}-{size_mib}-{rnd}.bin"
                    puts = {
                        "cli": lambda: grid.cli("put", source),
                        "web": lambda: grid.curl("-T", source, f"{web}/uri"),
                        "sftp": lambda: grid.sftp_batch(f"put {source} {name}\n"),
                        "ftp": lambda: grid.curl("-u", user, "-T", source, f"{ftp}/{name}"),
                        "webdav": lambda: grid.curl("-u", user, "-T", source, f"{dav}/{name}"),
                    }
                    secs, peak, cpu, cap = measure(grid, size, puts[fe])
                    record(best, size_mib, "put", fe, size / MIB / secs, peak, cpu)
                    read_cap = cap  # the CLI and PUT /uri print the file's cap
                    gets = {
                        "cli": lambda: grid.cli("get", read_cap, out),
                        "web": lambda: grid.curl("-o", out, f"{web}/uri/{read_cap}"),
                        "sftp": lambda: grid.sftp_batch(f"get {name} {out}\n"),
                        "ftp": lambda: grid.curl("-u", user, "-o", out, f"{ftp}/{name}"),
                        "webdav": lambda: grid.curl("-u", user, "-o", out, f"{dav}/{name}"),
                    }
                    secs, peak, cpu, _ = measure(grid, size, gets[fe])
                    record(best, size_mib, "get", fe, size / MIB / secs, peak, cpu)
                    check_same(source, out, fe)
                    os.remove(out)
            os.remove(source)
        idle_after = idle(grid.gateway)
        summary(best, frontends, idle_before, idle_after, bound)
    finally:
        if grid:
            grid.stop()
        shutil.rmtree(work, ignore_errors=True)


def record(best, size_mib, op, fe, rate, peak, cpu):
    gateway, servers, client = cpu
    print(f"{size_mib:>4}Mi {fe:>8} {op:>3} {rate:>7.1f} {peak:>6.1f}MiB "
          f"{gateway:>16.1f} + {servers:4.1f} = {gateway + servers:4.1f} {client:>6.1f}", flush=True)
    key = (size_mib, op, fe)
    old = best.get(key)
    grid_cpu, all_cpu = gateway + servers, gateway + servers + client
    best[key] = (max(rate, old[0]) if old else rate, max(peak, old[1]) if old else peak,
                 min(grid_cpu, old[2]) if old else grid_cpu, min(all_cpu, old[3]) if old else all_cpu)


def check_same(source, out, fe):
    if subprocess.run(["cmp", "-s", source, out]).returncode != 0:
        sys.exit(f"{fe}: the download differs from the upload")


def summary(best, frontends, idle_before, idle_after, bound):
    print("\nbest of the rounds; shares of the CLI's rate in the same run:")
    misses = []
    sizes = sorted({k[0] for k in best})
    cores = len(os.sched_getaffinity(0))
    for size in sizes:
        for op in ("put", "get"):
            cli = best[(size, op, "cli")][0]
            parts = []
            for fe in frontends[1:]:
                rate, fe_cpu = best[(size, op, fe)][0], best[(size, op, fe)][3]
                share = 100 * rate / cli
                target = TARGETS[(op, fe)]
                allowed = 100 * (cores * 1000 / fe_cpu) / cli if fe_cpu > 0 else 100
                note = f", CPU allows {allowed:.0f}%" if allowed < 100 else ""
                parts.append(f"{fe} {share:.0f}% (>= {target}%{note})")
                if share < target:
                    misses.append(f"{size} MiB {op} {fe}: {share:.0f}% of the CLI's rate")
            print(f"  {size:>4} MiB {op}: CLI {cli:.1f} MiB/s; " + ", ".join(parts))
    for size in sizes:
        if (size, "put", "web") in best:
            rate = best[(size, "put", "web")][0]
            goal = min(WEB_UPLOAD_TARGET_MIB_S, bound)
            print(f"  {size:>4} MiB PUT /uri: {rate:.1f} MiB/s (target >= {WEB_UPLOAD_TARGET_MIB_S} MiB/s "
                  f"where the disk allows; its bound here ~{bound:.0f})")
            if rate < 0.9 * goal:
                misses.append(f"{size} MiB PUT /uri: {rate:.1f} MiB/s")
    cpu = max(v[2] for k, v in best.items() if k[1] == "put")
    peak = max(v[1] for v in best.values())
    print(f"  CPU per MiB uploaded (gateway + servers), worst frontend: {cpu:.1f} ms "
          f"(target <= {CPU_TARGET_MS_PER_MIB})")
    print(f"  gateway peak RSS during one transfer, worst: {peak:.1f} MiB (target <= {PEAK_RSS_TARGET_MIB})")
    print(f"  gateway idle RSS: {idle_before:.1f} MiB at start, {idle_after:.1f} MiB settled after the transfers "
          f"(target <= {IDLE_RSS_TARGET_MIB})")
    if cpu > CPU_TARGET_MS_PER_MIB:
        misses.append(f"CPU {cpu:.1f} ms/MiB")
    if peak > PEAK_RSS_TARGET_MIB:
        misses.append(f"peak RSS {peak:.1f} MiB")
    if max(idle_before, idle_after) > IDLE_RSS_TARGET_MIB:
        misses.append(f"idle RSS {max(idle_before, idle_after):.1f} MiB")
    print("BELOW TARGET: " + "; ".join(misses) if misses else "every target met")


if __name__ == "__main__":
    main()
