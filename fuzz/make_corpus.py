#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/TARGET/) from the project's vectors and
Tahoe-LAFS's (../shared/vectors), plus hand-written seeds. The output is committed; rerun this
only to change the seeds. Every seed is a real input or a small edit of one:

- cap: every cap kind from Tahoe's test_vectors.yaml, our chk_vectors.json and the golden shares.
- ueb: the URI extension blocks of Tahoe 1.20's golden CHK shares.
- chk_share: share number + share data of the golden 1024-byte 3-of-10 file (tests/src/fuzz's CHK_CAP).
- mutable_share: share number + SDMF and MDMF golden shares (SDMF_CAP, MDMF_CAP).
- dirnode: packed directories (Tahoe's format) with and without write-cap slots.
- share_container: 8-byte read offset + complete share files from Tahoe's test_download.py and
  test_interoperability.py (immutable and mutable containers, with leases).
- storage_wire: every CBOR message of the storage protocol, and Range/Content-Range values.
- sftp_packet: SFTP v3 requests as OpenSSH sends them (type byte onwards).
- ftp_path, ftp_session, web_range, accounts: real paths, command lines, headers, accounts lines.
- storage_http, web: structured targets read through `arbitrary`; their seeds are fixed
  pseudo-random bytes (any bytes decode to a request).

node's targets (tahoe_cfg, servers_yaml, announcement) are written by hand under fuzz/corpus too.
"""

import base64
import json
import os
import random
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("TESSERA_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
VECTORS = os.path.join(SHARED, "vectors")
OUT = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def load(path):
    with open(path) as f:
        return json.load(f)


# ---- CBOR (just what the storage protocol uses) ----

def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for size, code, fmt in ((0xFF, 24, ">B"), (0xFFFF, 25, ">H"), (0xFFFFFFFF, 26, ">I")):
        if n <= size:
            return bytes([major << 5 | code]) + struct.pack(fmt, n)
    return bytes([major << 5 | 27]) + struct.pack(">Q", n)


class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def cbor(v):
    if v is True:
        return b"\xf5"
    if v is False:
        return b"\xf4"
    if v is None:
        return b"\xf6"
    if isinstance(v, int):
        return cbor_head(0, v) if v >= 0 else cbor_head(1, -1 - v)
    if isinstance(v, bytes):
        return cbor_head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return cbor_head(3, len(b)) + b
    if isinstance(v, list):
        return cbor_head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return cbor_head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    if isinstance(v, Tag):
        return cbor_head(6, v.tag) + cbor(v.value)
    raise TypeError(v)


def netstring(b):
    return str(len(b)).encode() + b":" + b + b","


def main():
    golden = load(os.path.join(VECTORS, "golden", "chk_golden_shares.json"))["cases"]

    # cap
    caps = set()
    for path in (os.path.join(VECTORS, "tahoe", "test_vectors.yaml"),
                 os.path.join(ROOT, "tests", "vectors", "chk_vectors.json")):
        with open(path) as f:
            text = f.read()
        for kind in ("CHK", "SSK", "MDMF", "LIT"):
            caps.update(sorted(set(re.findall(r"URI:%s:[A-Za-z0-9:]+" % kind, text)))[:6])
    for name in ("sdmf_small", "mdmf_small", "dirnode"):
        d = load(os.path.join(VECTORS, "golden", "mutable", name + ".json"))
        caps.update([d["cap"], d["readcap"]])
        if "subdir_cap" in d:
            caps.add(d["subdir_cap"])
    chk = golden[1]["cap"]
    mdmf = load(os.path.join(VECTORS, "golden", "mutable", "mdmf_small.json"))["cap"]
    body = chk[len("URI:CHK:"):]
    caps.update([
        "URI:CHK-Verifier:" + body.split(":", 1)[0][:26] + ":" + body.split(":", 1)[1],
        "URI:DIR2-CHK:" + body,
        "URI:DIR2-LIT:mfrgg",
        "URI:DIR2-MDMF:" + mdmf[len("URI:MDMF:"):],
        "ro.URI:DIR2-MDMF:" + mdmf[len("URI:MDMF:"):],
        "imm." + chk,
        "URI:LIT:",
        "x-tahoe-future-cap:abc",
    ])
    for i, cap in enumerate(sorted(caps)):
        write("cap", "%03d" % i, cap)

    # ueb, chk_share
    for i, case in enumerate(golden):
        for shnum, b64 in sorted(case["share_data_b64"].items()):
            share = base64.b64decode(b64)
            version = struct.unpack(">I", share[:4])[0]
            if version == 1:
                ueb_at = struct.unpack(">I", share[0x20:0x24])[0]
                (length,) = struct.unpack(">I", share[ueb_at:ueb_at + 4])
                ueb = share[ueb_at + 4:ueb_at + 4 + length]
            else:
                ueb_at = struct.unpack(">Q", share[0x3C:0x44])[0]
                (length,) = struct.unpack(">Q", share[ueb_at:ueb_at + 8])
                ueb = share[ueb_at + 8:ueb_at + 8 + length]
            if shnum == "0":
                write("ueb", "case%02d" % i, ueb)
            if case["cap"] == chk:
                write("chk_share", "share%s" % shnum, bytes([int(shnum)]) + share)

    # mutable_share
    for name in ("sdmf_small", "mdmf_small"):
        d = load(os.path.join(VECTORS, "golden", "mutable", name + ".json"))
        for shnum in ("0", "1", "2"):
            write("mutable_share", "%s-%s" % (name, shnum),
                  bytes([int(shnum)]) + base64.b64decode(d["shares"][shnum]))

    # dirnode
    def entry(name, ro, rw, meta):
        return netstring(netstring(name.encode()) + netstring(ro.encode()) + netstring(rw)
                         + netstring(json.dumps(meta).encode()))
    meta = {"tahoe": {"linkcrtime": 1700000000.5, "linkmotime": 1700000001.25}, "mtime": 1.5}
    rng = random.Random(1)
    write("dirnode", "readonly", entry("file", chk, b"", meta) + entry("sub", golden[0]["cap"], b"", {}))
    write("dirnode", "writable", entry("a", "ro." + chk, bytes(rng.randrange(256) for _ in range(48 + 90)), meta)
          + entry("\u00e9t\u00e9", "", bytes(rng.randrange(256) for _ in range(48)), {"tahoe": {}}))
    write("dirnode", "unknown", entry("future", "x-tahoe-future:abc", b"", {"a": [1, 2, {"b": None}]}))
    write("dirnode", "empty", b"")

    # share_container
    stored = load(os.path.join(VECTORS, "tahoe", "test_download_stored_shares.json"))
    offset = struct.pack(">Q", 100)
    n = 0
    for key in ("immutable_share_files_b64", "mutable_share_files_b64"):
        for server, shares in sorted(stored[key].items())[:2]:
            for shnum, b64 in sorted(shares.items())[:1]:
                write("share_container", "%s-%d" % (key.split("_")[0], n), offset + base64.b64decode(b64))
                n += 1
    old = load(os.path.join(VECTORS, "tahoe", "sdmf_old_shares.json"))
    write("share_container", "sdmf-old", struct.pack(">Q", 500) + base64.b64decode(old["share_files_b64"]["0"]))

    # storage_wire
    s = lambda xs: Tag(258, list(xs))
    messages = {
        "allocate": {"share-numbers": s([0, 1, 5]), "allocated-size": 1024},
        "corrupt": {"reason": "the block hash did not match"},
        "rtw": {"test-write-vectors": {0: {"test": [{"offset": 0, "size": 4, "specimen": b"abcd"}],
                                           "write": [{"offset": 0, "data": b"new data"}],
                                           "new-length": None}},
                "read-vector": [{"offset": 0, "size": 10}]},
        "version": {b"http://allmydata.org/tahoe/protocols/storage/v1":
                    {b"maximum-immutable-share-size": 2**40, b"maximum-mutable-share-size": 69105 * 1000 * 1000 * 1000 * 1000,
                     b"available-space": 10**12},
                    b"application-version": b"tahoe-lafs/1.20.0"},
        "allocation": {"already-have": s([1]), "allocated": s([0, 2])},
        "progress": {"required": [{"begin": 0, "end": 100}, {"begin": 200, "end": 300}]},
        "share-set": s([0, 3, 9]),
        "rtw-result": {"success": True, "data": {0: [b"0123456789"], 3: [b""]}},
        "status": {"shares": 3, "uploads-in-progress": 0, "last-expiration": None, "corruption-advisories": []},
    }
    for name, message in messages.items():
        write("storage_wire", name, cbor(message))
    for i, header in enumerate([b"bytes=0-99", b"bytes 0-99/*", b"bytes 100-199/1000", b"bytes=18446744073709551615-18446744073709551615"]):
        write("storage_wire", "header%d" % i, header)

    # storage_http, web: bytes for `arbitrary`
    for target in ("storage_http", "web"):
        rng = random.Random(target)
        for length in (16, 64, 256, 1024, 4096):
            write(target, "random-%d" % length, bytes(rng.randrange(256) for _ in range(length)))

    # web_range
    for i, (size, text) in enumerate([(20000, b"bytes=0-99"), (20000, b"bytes=-500"), (20000, b"bytes=100-"),
                                      (20000, b"bytes=0-0,5-9,100-199\n\"tag\""), (0, b"bytes=0-1"),
                                      (10, b"bytes=5-2"), (20000, b"bytes=0-99\n\"other\"")]):
        write("web_range", "%02d" % i, struct.pack(">Q", size) + text)

    # sftp_packet
    def sstr(b):
        if isinstance(b, str):
            b = b.encode()
        return struct.pack(">I", len(b)) + b
    rid = struct.pack(">I", 7)
    attrs_mtime = struct.pack(">III", 0x8, 1700000000, 1700000000)
    packets = {
        "init": bytes([1]) + struct.pack(">I", 3),
        "open-read": bytes([3]) + rid + sstr("/dir/file.txt") + struct.pack(">I", 1) + struct.pack(">I", 0),
        "open-write": bytes([3]) + rid + sstr("/uri/%s/new" % chk) + struct.pack(">I", 0x1A) + attrs_mtime,
        "read": bytes([5]) + rid + sstr("0") + struct.pack(">QI", 0, 32768),
        "write": bytes([6]) + rid + sstr("0") + struct.pack(">Q", 0) + sstr(b"hello"),
        "stat": bytes([17]) + rid + sstr("/a/./b/../c"),
        "lstat": bytes([7]) + rid + sstr("../../.."),
        "setstat": bytes([9]) + rid + sstr("/f") + attrs_mtime,
        "opendir": bytes([11]) + rid + sstr("/"),
        "mkdir": bytes([14]) + rid + sstr("/d") + struct.pack(">I", 0),
        "realpath": bytes([16]) + rid + sstr("."),
        "rename": bytes([18]) + rid + sstr("/a") + sstr("/b"),
        "posix-rename": bytes([200]) + rid + sstr("posix-rename@openssh.com") + sstr("/a") + sstr("/b"),
        "statvfs": bytes([200]) + rid + sstr("statvfs@openssh.com") + sstr("/"),
        "close": bytes([4]) + rid + sstr("0"),
    }
    for name, packet in packets.items():
        write("sftp_packet", name, packet)

    # ftp_path
    for i, path in enumerate(["/", "/a/b/c.txt", "/uri/%s" % golden[0]["cap"], "/uri/%s/sub/../x" % mdmf,
                              "../../etc", "/uri/URI:bad/x", "./a/./b/", "/a//b"]):
        write("ftp_path", "%02d" % i, path)

    # ftp_session
    sessions = {
        "anonymous": b"\x00USER anonymous\nSYST\nFEAT\nQUIT\n",
        "browse": b"\x01PWD\nTYPE I\nLIST\nMLSD /\nCWD /uri\nSIZE file\nMDTM file\nSTAT\nNOOP\nQUIT\n",
        "changes": b"\x01MKD new\nRNFR a\nRNTO b\nDELE x\nRMD d\nREST 100\nOPTS UTF8 ON\nHELP\n",
        "caps": ("\x01CWD /uri/%s\nSIZE /uri/%s\nMLST /\nCDUP\nQUIT\n" % (mdmf, chk)).encode(),
    }
    for name, text in sessions.items():
        write("ftp_session", name, text.replace(b"\n", b"\r\n"))

    # accounts
    with open(os.path.join(VECTORS, "tahoe", "allmydata_test_data", "openssh-rsa-2048.pub.txt")) as f:
        rsa = f.read().split()[1]
    dircap = load(os.path.join(VECTORS, "golden", "mutable", "dirnode.json"))["cap"]
    write("accounts", "keys", "# comment\nalice ssh-rsa %s alice@example %s\n\nbob ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1Z3M %s\n" % (rsa, dircap, dircap))
    write("accounts", "password", "carol $argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGg %s\n" % dircap)
    write("accounts", "bad", "dave plaintext-password %s\neve ssh-dss AAAA %s\nshort\n" % (dircap, dircap))


if __name__ == "__main__":
    sys.exit(main())
