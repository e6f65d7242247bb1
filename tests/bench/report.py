#!/usr/bin/python3
"""report.py RAW META PROFILE_DIR > results.md

RAW: run.sh's raw.tsv, one measured run a line:
  phase n tool run wall cpu user sys maxrss_kib rc machine_cpu load1 served [node_cpu]
META: key=value facts (machine, versions, load averages).
PROFILE_DIR: callgrind-N.txt / perf-N.txt summaries, if the profile ran.
"""
import os
import re
import statistics
import sys

NAMES = {
    "seq": "scp + ssh loop, sequential",
    "pssh": "parallel-scp + parallel-ssh",
    "ansible": "ansible-playbook",
    "certfleet": "certfleet deploy",
    "certbot": "certbot certonly",
}
KEEP_RE = (r"^(SSL_do_handshake|d2i_X509|OSSL_DECODER_CTX_new_for_pkey|"
           r"PEM_read_bio_PrivateKey|libssh2_\w+|EVP_PKEY_keygen|"
           r"EVP_DigestVerify|EVP_DigestSign|EVP_PKEY_derive|getaddrinfo|"
           r"CRYPTO_malloc|CRYPTO_free|CRYPTO_THREAD_\w+|pthread_create)$")
ORDER = ["seq", "pssh", "ansible", "certfleet", "certbot"]


def load_raw(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 13:
                continue
            rows.append({
                "phase": p[0], "n": int(p[1]), "tool": p[2], "run": int(p[3]),
                "wall": float(p[4]), "cpu": float(p[5]), "user": float(p[6]),
                "sys": float(p[7]), "rss": int(p[8]) / 1024.0, "rc": int(p[9]),
                "mcpu": None if p[10] == "-" else float(p[10]),
                "load": p[11], "served": p[12],
                "ncpu": float(p[13]) if len(p) > 13 and p[13] not in ("", "-") else None,
            })
    return rows


def load_meta(path):
    m = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            m[k] = v
    return m


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def group(rows, phase):
    g = {}
    for r in rows:
        if r["phase"] == phase:
            g.setdefault((r["n"], r["tool"]), []).append(r)
    return g


def summary(rs):
    served = [r["served"] for r in rs]
    # "k/n": the worst run counts
    worst = min(served, key=lambda s: int(s.split("/")[0]) if "/" in s else 0)
    mc = [r["mcpu"] for r in rs if r["mcpu"] is not None]
    nc = [r["ncpu"] for r in rs if r["ncpu"] is not None]
    return {
        "runs": len(rs),
        "wall": med([r["wall"] for r in rs]),
        "wall_min": min(r["wall"] for r in rs),
        "wall_max": max(r["wall"] for r in rs),
        "cpu": med([r["cpu"] for r in rs]),
        "rss": med([r["rss"] for r in rs]),
        "mcpu": med(mc) if mc else None,
        "ncpu": med(nc) if nc else None,
        "rcs": sorted(set(r["rc"] for r in rs)),
        "served": worst,
    }


def f(x, d=2):
    return "-" if x is None else ("%.*f" % (d, x))


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return "%.1f×" % (a / b)


def main():
    rows = load_raw(sys.argv[1])
    meta = load_meta(sys.argv[2])
    prof = sys.argv[3] if len(sys.argv) > 3 else ""
    out = []
    w = out.append
    w("# certfleet benchmark results")
    w("")
    w("Written by `make bench` (tests/bench/run.sh); raw runs in tests/bench/raw.tsv.")
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    for k, label in [("date", "date"), ("continued", "continued"), ("cpu", "CPU"), ("nproc", "nproc"),
                     ("mem_total_mib", "memory (MiB)"), ("kernel", "kernel"),
                     ("debian", "Debian")]:
        if k in meta or k != "continued":
            w("| %s | %s |" % (label, meta.get(k, "?")))
    for k in sorted(k for k in meta if k.startswith("v_")):
        w("| %s | %s |" % (k[2:], meta[k]))
    w("")
    loads = [(k, v) for k, v in meta.items() if k.startswith("load_")]
    starts = [(k, v) for k, v in loads
              if not k.endswith("_end") and k not in ("load_start", "load_end")]
    ends = [(k, v) for k, v in loads if k.endswith("_end") and k != "load_end"]
    busy = [v for k, v in starts if float(v.split()[0]) > 1.5]
    w("**Load.** %s cores; every phase waits (up to %s s) for the "
      "1-minute load average to fall below %s before it starts, so the "
      "load its predecessor left (nodes of a big bed, Ansible's forks) has "
      "drained. 1/5/15-minute load averages at the start of each phase: "
      "%s%s. %s" % (
          meta.get("nproc", "?"), meta.get("load_wait", "300"),
          meta.get("max_load", "1.5"),
          "; ".join("%s %s" % (k[5:], v) for k, v in starts),
          ("; at the end of a phase (its own load): " +
           "; ".join("%s %s" % (k[5:-4], v) for k, v in ends)) if ends else "",
          "A phase started with the 1-minute load above the limit "
          "%d time(s) (the wait ran out): its wall times suffer." % len(busy)
          if busy else "No phase started on a busy machine."))
    w("")
    w("## Method")
    w("")
    w("Every node is a network namespace of this machine with its own sshd "
      "(OpenSSH, ed25519 host key) and nginx (tests/lib/testbed.sh); nodes "
      "and coordinator share the same cores, so node-side work (SSH "
      "handshakes, `nginx -t`, reloads) is in every tool's wall time. The "
      "job, with a new certificate every run so every run really deploys: "
      "copy fullchain.pem and privkey.pem to /srv/tls, `nginx -t -q -c "
      "/srv/nginx.conf`, `nginx -s reload -c /srv/nginx.conf`, and check "
      "over TLS that every node serves the new certificate. Host keys are "
      "checked strictly against the bed's known_hosts by every tool.")
    w("")
    w("- **scp + ssh loop**: per node `scp` both files, then `ssh` check && "
      "reload (what acme.sh's ssh deploy and most scripts do), one node after "
      "the other.")
    w("- **parallel-scp + parallel-ssh** (pssh %s): both files in one "
      "`parallel-scp -p N`, then `parallel-ssh -p N` check && reload on the "
      "nodes that got them: 2 SSH connections per node." % meta.get("v_pssh", "").split()[-1])
    w("- **ansible-playbook** with forks = N, `gather_facts: false` (the job "
      "needs none; gathering would only slow Ansible down), two `copy` tasks "
      "and two `command` tasks (tests/bench/deploy.yml), Ansible's default "
      "ssh_args (ControlMaster=auto, ControlPersist=60s) with a fresh "
      "control directory each run.")
    w("- **certfleet deploy --cert --key**: `rollout.concurrency` = N up to "
      "64 (see below), canary 1 (the default), one SSH session and one remote shell per node "
      "(the files travel inside the stage script, which also checks and "
      "reloads), then its own TLS verification of every node.")
    w("- The three baselines have no TLS check of their own: "
      "tests/bench/tlscheck.sh runs `openssl s_client` against every node "
      "the tool reported done, all at once, retrying for up to 10 s while "
      "the reload takes effect, inside the measured time.")
    w("- **Wall**: median over the runs. **Coordinator CPU**: user+sys of "
      "every process the tool started (a cpuacct cgroup per run, so "
      "Ansible's backgrounded ssh masters count too), the baselines' TLS "
      "check included. **Peak RSS**: GNU time's %M, the largest single "
      "process of the tree. **Node CPU**: CPU used by every process in the "
      "nodes' namespaces (sshd and its sessions, sftp, the remote shell, "
      "nginx -t, nginx and its new workers), where recorded. **Machine CPU**: busy time of the whole machine "
      "during the run (nodes' sshd/nginx included, and anything else "
      "running on the machine at that time). Ratios are tool ÷ certfleet "
      "(medians). **Serving**: nodes serving the new certificate after the "
      "run, checked independently (worst run).")
    w("")

    # --- deploy ----------------------------------------------------------
    dep = group(rows, "deploy")
    sizes = sorted(set(n for n, _ in dep))
    if sizes:
        w("## Deploy: the same job on N nodes")
        w("")
        w("| nodes | tool | runs | wall (s) | coordinator CPU (s) | CPU / node (ms) "
          "| peak RSS (MiB) | node CPU (s) | machine CPU (s) | wall ÷ certfleet | CPU ÷ certfleet | serving | exit |")
        w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for n in sizes:
            cf = dep.get((n, "certfleet"))
            cfs = summary(cf) if cf else None
            for t in ORDER:
                if (n, t) not in dep:
                    continue
                s = summary(dep[(n, t)])
                w("| %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    n, NAMES[t], s["runs"], f(s["wall"]), f(s["cpu"]),
                    f(s["cpu"] * 1000 / n, 1), f(s["rss"], 1), f(s["ncpu"], 1),
                    f(s["mcpu"], 1),
                    ratio(s["wall"], cfs["wall"]) if cfs else "-",
                    ratio(s["cpu"], cfs["cpu"]) if cfs else "-",
                    s["served"], ",".join(map(str, s["rcs"]))))
        w("")
        w("Wall range (min–max) per cell: " + "; ".join(
            "%d %s %s–%s s" % (n, t, f(summary(dep[(n, t)])["wall_min"], 1),
                               f(summary(dep[(n, t)])["wall_max"], 1))
            for n in sizes for t in ORDER if (n, t) in dep) + ".")
        w("")

    # --- blackhole -------------------------------------------------------
    bh = group(rows, "blackhole")
    if bh:
        n = sorted(set(k[0] for k in bh))[0]
        w("## Two blackholed nodes of %d, 5 s connect timeout" % n)
        w("")
        w("Nodes 3 and 15 drop every packet (`iptables -A INPUT -j DROP`): a "
          "connect hangs until the client's deadline. Every tool gets a 5 s "
          "connect timeout (OpenSSH `ConnectTimeout=5`, Ansible `timeout = 5`, "
          "certfleet `ssh.connect_timeout: 5`). The baselines' TLS check runs "
          "on the nodes each tool reported done; parallel-ssh runs on the "
          "nodes parallel-scp reached (a plain `pscp && pssh` would reload "
          "nothing at all).")
        w("")
        w("| tool | runs | wall (s) | max wall (s) | coordinator CPU (s) | healthy nodes serving | exit |")
        w("|---|---:|---:|---:|---:|---|---|")
        for t in ORDER:
            if (n, t) in bh:
                s = summary(bh[(n, t)])
                w("| %s | %d | %s | %s | %s | %s | %s |" % (
                    NAMES[t], s["runs"], f(s["wall"]), f(s["wall_max"]),
                    f(s["cpu"]), s["served"], ",".join(map(str, s["rcs"]))))
        w("")

    # --- issuance --------------------------------------------------------
    iss = group(rows, "issue")
    if iss:
        w("## Issuance: one certificate for 2 names from Pebble")
        w("")
        w("Same Pebble (%s, `PEBBLE_VA_NOSLEEP=1`, no nonce rejection, no "
          "authorization reuse, so every order solves both challenges), same "
          "names (bench.test, www.bench.test), same challenge: dns-01 through "
          "the same hook, hooks/dns-pebble-challtestsrv (certbot calls it "
          "through tests/bench/certbot-dns-hook as --manual-auth-hook and "
          "--manual-cleanup-hook), P-256 certificate key for both, accounts "
          "registered in an unmeasured warm-up run. `certfleet renew --force "
          "--no-deploy` vs `certbot certonly --force-renewal --manual "
          "--preferred-challenges dns`. Runs alternate." % meta.get("v_pebble", "pebble"))
        w("")
        w("| tool | runs | wall (s) | CPU (s) | peak RSS (MiB) | wall ÷ certfleet | RSS ÷ certfleet | exit |")
        w("|---|---:|---:|---:|---:|---:|---:|---|")
        cfs = summary(iss[(2, "certfleet")]) if (2, "certfleet") in iss else None
        for t in ["certfleet", "certbot"]:
            if (2, t) in iss:
                s = summary(iss[(2, t)])
                w("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
                    NAMES[t] if t != "certfleet" else "certfleet renew --force --no-deploy",
                    s["runs"], f(s["wall"]), f(s["cpu"]), f(s["rss"], 1),
                    ratio(s["wall"], cfs["wall"]) if cfs else "-",
                    ratio(s["rss"], cfs["rss"]) if cfs else "-",
                    ",".join(map(str, s["rcs"]))))
        w("")

    # --- scale -----------------------------------------------------------
    sc = group(rows, "scale")
    pts = {}
    for (n, t), rs in list(dep.items()) + list(sc.items()):
        if t == "certfleet":
            pts[n] = summary(rs)
    if len(pts) >= 2:
        w("## certfleet from 10 to %d nodes" % max(pts))
        w("")
        if sc:
            w("The %d-node bed: %d namespaces, each its own sshd and nginx "
              "(memory in use: %s MiB before the bed, %s MiB with it up). "
              "Its runs use certfleet's default `rollout.concurrency` = %s "
              "and `connect_timeout` = %s s (the smaller beds: concurrency "
              "min(N, 64), 5 s)." % (
                  max(pts), max(pts), meta.get("mem_used_mib_before_scale", "?"),
                  meta.get("mem_used_mib_%d" % max(pts), "?"),
                  meta.get("scale_concurrency", "?"),
                  meta.get("scale_connect_timeout", "?")))
            w("")
        herd = [r for r in rows if r["phase"] == "herd"]
        herd64 = [r for r in rows if r["phase"] == "herd64"]
        if herd64:
            w("With `rollout.concurrency` = 64 and the 5 s `connect_timeout` "
              "at %d nodes: %s serving after the run, wall %s s, load average "
              "near 70 (most of it the bed: %d sshd and %d nginx processes "
              "on %s cores)." % (
                  herd64[0]["n"], ", ".join(r["served"] for r in herd64),
                  ", ".join(f(r["wall"], 1) for r in herd64), herd64[0]["n"],
                  2 * herd64[0]["n"], meta.get("nproc", "?")))
            w("")
        if herd:
            w("With `rollout.concurrency` = %d (all nodes at once) the same "
              "%d-node deploy quarantined most nodes as timeouts (served "
              "after the run: %s; load average near 50). Most failures were "
              "TCP connects (to :443 for the first probe, to :22) running "
              "past the 5 s deadline, some SSH handshakes: every node's sshd "
              "and nginx run on this machine's %s cores too, so %d "
              "connections at once queue for the CPU, and the root "
              "namespace's neighbour table sat at its 512-entry gc_thresh2 "
              "(raised for the runs below). This is a property of the test "
              "bed more than of a real fleet, whose nodes bring their own "
              "CPUs, but note that certfleet's `connect_timeout` covers TCP, "
              "the SSH handshake and authentication, so an overloaded "
              "coordinator turns into timeouts." % (
                  herd[0]["n"], herd[0]["n"],
                  ", ".join(r["served"] for r in herd), meta.get("nproc", "?"),
                  herd[0]["n"]))
            w("")
        w("| nodes | runs | wall (s) | wall / node (ms) | coordinator CPU (s) | CPU / node (ms) | peak RSS (MiB) | machine CPU (s) | serving |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for n in sorted(pts):
            s = pts[n]
            w("| %d | %d | %s | %s | %s | %s | %s | %s | %s |" % (
                n, s["runs"], f(s["wall"]), f(s["wall"] * 1000 / n, 1),
                f(s["cpu"]), f(s["cpu"] * 1000 / n, 2), f(s["rss"], 1),
                f(s["mcpu"], 1), s["served"]))
        w("")
        ns = sorted(pts)
        xs = ns
        for key, label in [("cpu", "coordinator CPU"), ("wall", "wall")]:
            ys = [pts[n][key] for n in ns]
            mx, my = statistics.mean(xs), statistics.mean(ys)
            sxx = sum((x - mx) ** 2 for x in xs)
            b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
            a = my - b * mx
            ss_tot = sum((y - my) ** 2 for y in ys)
            ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys))
            r2 = 1 - ss_res / ss_tot if ss_tot else 1.0
            w("- %s ≈ %.3f s + %.2f ms × nodes (least squares over %s nodes, R² = %.3f)." % (
                label, a, b * 1000, "/".join(map(str, ns)), r2))
        for n in ns:
            for t in ORDER:
                if t != "certfleet" and (n, t) in sc:
                    s = summary(sc[(n, t)])
                    w("- %s at %d nodes: wall %s s, coordinator CPU %s s (%s ms/node), peak RSS %s MiB, serving %s." % (
                        NAMES[t], n, f(s["wall"]), f(s["cpu"]),
                        f(s["cpu"] * 1000 / n, 1), f(s["rss"], 1), s["served"]))
        w("")

    # --- targets ---------------------------------------------------------
    w("## Targets from the issue")
    w("")
    w("| target | measured | met? |")
    w("|---|---|---|")

    def row(target, measured, ok):
        w("| %s | %s | %s |" % (target, measured, "yes" if ok else "**no**"))

    def s_of(g, n, t):
        return summary(g[(n, t)]) if (n, t) in g else None
    c50, p50, a50 = s_of(dep, 50, "certfleet"), s_of(dep, 50, "pssh"), s_of(dep, 50, "ansible")
    if c50 and p50:
        row("50 nodes: ≥ 4× faster than parallel-ssh",
            "%.1f× (%.2f s vs %.2f s)" % (p50["wall"] / c50["wall"], p50["wall"], c50["wall"]),
            p50["wall"] / c50["wall"] >= 4)
    if c50 and a50:
        row("50 nodes: ≥ 30× faster than Ansible",
            "%.1f× (%.2f s vs %.2f s)" % (a50["wall"] / c50["wall"], a50["wall"], c50["wall"]),
            a50["wall"] / c50["wall"] >= 30)
    if c50 and p50:
        row("50 nodes: coordinator CPU ≤ 1/20 of parallel-ssh's",
            "1/%.1f (%.3f s vs %.2f s)" % (p50["cpu"] / c50["cpu"], c50["cpu"], p50["cpu"]),
            p50["cpu"] / c50["cpu"] >= 20)
    if c50:
        row("coordinator CPU < 10 ms per node (50 nodes)",
            "%.1f ms/node" % (c50["cpu"] * 1000 / 50), c50["cpu"] * 1000 / 50 < 10)
    if bh:
        n = sorted(set(k[0] for k in bh))[0]
        s = s_of(bh, n, "certfleet")
        if s:
            want = n - 2
            got = int(s["served"].split("/")[0])
            row("2 of %d blackholed: whole run ≤ connect timeout + 1 s (6 s), every healthy node served" % n,
                "max %.2f s, median %.2f s; %s healthy nodes serving" % (s["wall_max"], s["wall"], s["served"]),
                s["wall_max"] <= 6.0 and got == want)
    if iss and (2, "certfleet") in iss and (2, "certbot") in iss:
        a, b = summary(iss[(2, "certfleet")]), summary(iss[(2, "certbot")])
        row("issuance ≥ 4× faster than certbot",
            "%.1f× (%.2f s vs %.2f s)" % (b["wall"] / a["wall"], b["wall"], a["wall"]),
            b["wall"] / a["wall"] >= 4)
    if len(pts) >= 2 and max(pts) >= 200:
        big = max(pts)
        base = 50 if 50 in pts else min(pts)
        pb, pm = pts[base], pts[big]
        cpn_b, cpn_m = pb["cpu"] / base, pm["cpu"] / big
        wpn_b, wpn_m = pb["wall"] / base, pm["wall"] / big
        row("%d nodes: linear (per-node CPU and wall at %d within 1.5× of at %d)" % (big, big, base),
            "CPU/node %.2f → %.2f ms, wall/node %.1f → %.1f ms" % (
                cpn_b * 1000, cpn_m * 1000, wpn_b * 1000, wpn_m * 1000),
            cpn_m <= 1.5 * cpn_b and wpn_m <= 1.5 * wpn_b)
        row("%d nodes: peak RSS < 64 MiB" % big, "%.1f MiB" % pm["rss"], pm["rss"] < 64)
    w("")

    # --- machine CPU by program ------------------------------------------
    if prof and os.path.isdir(prof):
        by = {}
        for name in sorted(os.listdir(prof)):
            m = re.match(r"^machine-(\d+)-(\w+)\.txt$", name)
            if not m:
                continue
            progs = {}
            with open(os.path.join(prof, name)) as fh:
                for ln in fh:
                    parts = ln.split()
                    if len(parts) == 2 and not ln.startswith("#"):
                        progs[parts[1]] = float(parts[0])
            by.setdefault(int(m.group(1)), {})[m.group(2)] = progs
        for n in sorted(by):
            tools = [t for t in ORDER if t in by[n]]
            allp = sorted(set(p for t in tools for p in by[n][t]),
                          key=lambda p: -max(by[n][t].get(p, 0) for t in tools))
            w("## Where the machine's CPU goes: one job on %d nodes, by program" % n)
            w("")
            w("`perf record -a -e cpu-clock` of one run of each tool, CPU "
              "milliseconds per node by process name, whole machine (the "
              "nodes' sshd and nginx, the coordinator and everything they "
              "start); programs under 0.5 ms/node left out; "
              "tests/bench/profile/machine-%d-*.txt." % n)
            w("")
            w("| program | " + " | ".join(NAMES[t] for t in tools) + " |")
            w("|---|" + "---:|" * len(tools))
            for p_ in allp:
                w("| %s | %s |" % (p_, " | ".join(
                    f(by[n][t][p_], 1) if p_ in by[n][t] else "-" for t in tools)))
            w("| **total** | %s |" % " | ".join(f(sum(by[n][t].values()), 1) for t in tools))
            w("")
            cf_p = by[n].get("certfleet")
            ps_wall = summary(dep[(n, "pssh")])["wall"] if (n, "pssh") in dep else None
            if cf_p and ps_wall:
                floor_ms = cf_p.get("sshd", 0) + cf_p.get("nginx", 0)
                floor_s = floor_ms * n / 1000 / float(meta.get("nproc", "2"))
                w("**The floor on this bed.** Every tool must at least open "
                  "one SSH session per node and run `nginx -t` and the "
                  "reload: in certfleet's run the nodes' sshd and nginx "
                  "alone took %.0f ms of CPU per node, %.1f s of the "
                  "machine's %s cores for %d nodes. parallel-ssh took "
                  "%.2f s, so on this bed no tool can be more than %.1f× "
                  "faster than parallel-ssh (the issue's 4× assumed a floor "
                  "near 2.5 s); the rest of certfleet's time is its remote "
                  "shell and the few processes it starts (`sh`, `mv`, `ln`, "
                  "`timeout`, `sync`, `sha256sum`: counted above) and its "
                  "own CPU. On a real fleet each node brings its own CPU "
                  "and the floor is one node's handshake and reload." % (
                      floor_ms, floor_s, meta.get("nproc", "2"), n,
                      ps_wall, ps_wall / floor_s if floor_s else 0))
                w("")

    # --- profile ---------------------------------------------------------
    if prof and os.path.isdir(prof):
        for name in sorted(os.listdir(prof)):
            path = os.path.join(prof, name)
            if name.startswith("callgrind-"):
                with open(path) as fh:
                    text = fh.read()
                incl = text.split("# callgrind, inclusive", 1)
                if len(incl) < 2:
                    continue
                w("## Profile: where certfleet's coordinator spends its instructions (%s)" % name)
                w("")
                w("`valgrind --tool=callgrind` of one `certfleet deploy` "
                  "(perf has no hardware counters on this VM), all threads, "
                  "inclusive cost of certfleet's own steps and the library "
                  "entry points under them; full listings in "
                  "tests/bench/profile/. Percentages are of all instructions "
                  "the coordinator executed.")
                w("")
                w("```")
                seen = set()
                for ln in incl[1].split("\n"):
                    m = re.match(r"^\s*([0-9,]+) \(\s*([0-9.]+)%\)\s+(\S+)", ln)
                    if not m:
                        continue
                    fn = m.group(3)
                    short = fn.split(":", 1)[-1] if ":" in fn else fn
                    keep = ("PROGRAM" in ln or fn.startswith("src/") or
                            re.match(KEEP_RE, short))
                    if keep and short not in seen:
                        seen.add(short)
                        w("%15s %6s%%  %s" % (m.group(1), m.group(2),
                                             "PROGRAM TOTALS" if "PROGRAM" in ln else fn))
                w("```")
                w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
