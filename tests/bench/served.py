#!/usr/bin/python3
"""served.py SHA256HEX SNI IP... - untimed check after a run: how many of
the addresses serve the leaf whose DER has this SHA-256 (all at once,
threads).  Prints "OK/TOTAL" and the addresses that do not."""
import concurrent.futures, hashlib, socket, ssl, sys

want, sni, ips = sys.argv[1].lower(), sys.argv[2], sys.argv[3:]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

def leaf(ip):
    try:
        with socket.create_connection((ip, 443), timeout=3) as s:
            with ctx.wrap_socket(s, server_hostname=sni) as t:
                return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()
    except OSError:
        return ""

with concurrent.futures.ThreadPoolExecutor(max_workers=64) as ex:
    got = list(ex.map(leaf, ips))
bad = [ip for ip, g in zip(ips, got) if g != want]
print("%d/%d%s" % (len(ips) - len(bad), len(ips), (" not: " + " ".join(bad)) if bad else ""))
