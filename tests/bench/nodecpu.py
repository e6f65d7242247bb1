#!/usr/bin/python3
"""nodecpu.py PREFIX - CPU seconds (user+sys, own plus waited-for children)
used so far by every process in the network namespaces whose name starts
with PREFIX (the test bed's nodes: sshd, its sessions, sftp, nginx).  Taken
before and after a run, the difference is what the run cost the nodes: a
session that ended was reaped into its parent's children time."""
import os, sys

prefix = sys.argv[1]
want = set()
for ns in os.listdir("/run/netns"):
    if ns.startswith(prefix):
        try:
            st = os.stat("/run/netns/" + ns)
            want.add((st.st_dev, st.st_ino))
        except OSError:
            pass
hz = os.sysconf("SC_CLK_TCK")
total = 0
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        st = os.stat("/proc/%s/ns/net" % p)
        if (st.st_dev, st.st_ino) not in want:
            continue
        with open("/proc/%s/stat" % p) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # after the comm: state is fields[0]; utime stime cutime cstime = 11..14
        total += sum(int(x) for x in fields[11:15])
    except (OSError, IndexError, ValueError):
        continue
print("%.2f" % (total / hz))
