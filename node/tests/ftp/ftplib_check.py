"""Every FTP command the frontend serves, through Python's ftplib (a real client).

Usage: ftplib_check.py HOST PORT USER PASSWORD NODE_URL plain|tls pasv|epsv

Prints one line per check and then "N passed, M failed"; exits 1 if any failed.
"""

import ftplib
import io
import os
import socket
import ssl
import sys
import urllib.request

host, port, user, password, node_url, security, passive = sys.argv[1:8]
port = int(port)
results = {"passed": 0, "failed": 0}


def check(name, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported, then the next check runs
        results["failed"] += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    else:
        results["passed"] += 1
        print(f"ok   {name}", flush=True)


def expect_error(code, fn):
    """fn must fail with an FTP reply starting with `code`."""
    try:
        fn()
    except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply) as e:
        assert str(e).startswith(code), f"expected {code}, got {e}"
        return
    raise AssertionError(f"expected a {code} reply, but it succeeded")


def epsv_mixin(base):
    class Epsv(base):
        def makepasv(self):
            # Extended passive mode (RFC 2428) even over IPv4.
            return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())

    return Epsv


class TolerantTls(ftplib.FTP_TLS):
    """ftplib waits for the server's TLS close_notify after an upload; libunftp closes the data
    connection without one (curl and other clients do not wait for it). The reply on the control
    channel is what tells success or failure, and it is still checked."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = super().ntransfercmd(cmd, rest)
        unwrap = conn.unwrap

        def tolerant_unwrap():
            try:
                return unwrap()
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
                return None

        conn.unwrap = tolerant_unwrap
        return conn, size


def connect():
    if security == "tls":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the node's certificate is self-signed
        cls = TolerantTls
        if passive == "epsv":
            cls = epsv_mixin(cls)
        ftp = cls(context=context, timeout=60, encoding="utf-8")
        ftp.connect(host, port)
        ftp.auth()
        ftp.login(user, password)
        ftp.prot_p()
    else:
        cls = epsv_mixin(ftplib.FTP) if passive == "epsv" else ftplib.FTP
        ftp = cls(timeout=60, encoding="utf-8")
        ftp.connect(host, port)
        ftp.login(user, password)
    ftp.set_pasv(True)
    return ftp


def retr(ftp, path, rest=None):
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", out.write, rest=rest)
    return out.getvalue()


def stor(ftp, path, data, cmd="STOR"):
    return ftp.storbinary(f"{cmd} {path}", io.BytesIO(data))


ftp = connect()
top = f"check-{security}-{passive}"
small = os.urandom(1000)
medium = os.urandom(300_000)


def feat():
    lines = ftp.sendcmd("FEAT")
    for feature in ["UTF8", "REST STREAM", "MLST", "MLSD", "EPSV", "SIZE", "MDTM"]:
        assert feature in lines, f"{feature} missing from FEAT: {lines}"
    if security == "tls":
        assert "AUTH TLS" in lines, lines


check("FEAT lists UTF8, REST STREAM, MLST, EPSV", feat)
check("OPTS UTF8 ON", lambda: ftp.sendcmd("OPTS UTF8 ON").startswith("200") or 1 / 0)
check("PWD at login is /", lambda: ftp.pwd() == "/" or 1 / 0)


def mkd_cwd_cdup():
    assert ftp.sendcmd(f"MKD {top}").startswith("257")
    ftp.cwd(top)
    assert ftp.pwd().rstrip("/").endswith(top), ftp.pwd()
    ftp.sendcmd("CDUP")
    assert ftp.pwd() in ("/", "/."), ftp.pwd()
    ftp.cwd(top)


check("MKD, CWD, PWD, CDUP", mkd_cwd_cdup)


def stor_retr():
    stor(ftp, "small.bin", small)
    stor(ftp, "medium.bin", medium)
    assert retr(ftp, "small.bin") == small
    assert retr(ftp, "medium.bin") == medium


check("STOR and RETR (relative paths)", stor_retr)
check("STOR replaces a file", lambda: (stor(ftp, "small.bin", small[:500]), stor(ftp, "small.bin", small), retr(ftp, "small.bin") == small or 1 / 0))
check("REST then RETR resumes at the offset", lambda: retr(ftp, "medium.bin", rest=123_457) == medium[123_457:] or 1 / 0)
check("SIZE", lambda: ftp.size("medium.bin") == len(medium) or 1 / 0)


def mdtm():
    reply = ftp.sendcmd("MDTM small.bin")
    assert reply.startswith("213 ") and len(reply.split()[1]) >= 14, reply


check("MDTM", mdtm)


def listing():
    lines = []
    ftp.retrlines("LIST", lines.append)
    assert any(line.endswith(" medium.bin") and str(len(medium)) in line for line in lines), lines
    names = ftp.nlst()
    assert sorted(names) == ["medium.bin", "small.bin"], names
    facts = dict(ftp.mlsd())
    assert facts["medium.bin"]["type"] == "file" and facts["medium.bin"]["size"] == str(len(medium)), facts
    # libunftp 0.24 resolves MLST's argument from / rather than the working directory.
    reply = ftp.sendcmd(f"MLST /{top}/medium.bin")
    assert reply.startswith("250") and f"size={len(medium)}" in reply.lower(), reply


check("LIST, NLST, MLSD, MLST", listing)


def utf8_names():
    name = "ñandú-日本.txt"
    stor(ftp, name, b"utf-8 names")
    assert name in ftp.nlst(), ftp.nlst()
    assert retr(ftp, name) == b"utf-8 names"
    ftp.mkd("répertoire")
    ftp.cwd("répertoire")
    ftp.cwd("..")
    ftp.rmd("répertoire")
    ftp.delete(name)


check("UTF-8 names", utf8_names)


def resumed_uploads():
    # An interrupted upload: the server holds the first part, REST n + STOR sends the rest.
    stor(ftp, "resumed.bin", medium[:100_000])
    ftp.storbinary("STOR resumed.bin", io.BytesIO(medium[100_000:]), rest=100_000)
    assert ftp.size("resumed.bin") == len(medium), ftp.size("resumed.bin")
    assert retr(ftp, "resumed.bin") == medium
    # Resumed before the end: what came after the offset is replaced.
    ftp.storbinary("STOR resumed.bin", io.BytesIO(b"end"), rest=10)
    assert retr(ftp, "resumed.bin") == medium[:10] + b"end"
    # APPE appends; APPE of a new name makes it.
    stor(ftp, "resumed.bin", b"more", "APPE")
    assert retr(ftp, "resumed.bin") == medium[:10] + b"endmore"
    stor(ftp, "appended.bin", b"new", "APPE")
    stor(ftp, "appended.bin", b" and more", "APPE")
    assert retr(ftp, "appended.bin") == b"new and more"
    ftp.delete("appended.bin")


check("REST + STOR resumes an upload, APPE appends", resumed_uploads)


def hostile_resumes():
    before = retr(ftp, "resumed.bin")
    # A start past the end of the file (or of a missing one): 551, and nothing changes. libunftp
    # keeps a REST offset after a failed transfer, so the next transfer is given REST 0 first.
    expect_error("551", lambda: ftp.storbinary("STOR resumed.bin", io.BytesIO(b"gap"), rest=len(before) + 1))
    ftp.sendcmd("REST 0")
    expect_error("551", lambda: ftp.storbinary("STOR no-such-file.bin", io.BytesIO(b"x"), rest=5))
    ftp.sendcmd("REST 0")
    assert retr(ftp, "resumed.bin") == before
    assert "no-such-file.bin" not in ftp.nlst()
    # APPE to a directory: 550, the directory stays one.
    ftp.mkd("appe-dir")
    expect_error("550", lambda: stor(ftp, "appe-dir", b"x", "APPE"))
    expect_error("550", lambda: ftp.storbinary("STOR appe-dir", io.BytesIO(b"x"), rest=0))
    assert dict(ftp.mlsd())["appe-dir"]["type"] == "dir"
    ftp.rmd("appe-dir")
    ftp.delete("resumed.bin")


check("REST past the end is 551, APPE to a directory 550", hostile_resumes)


def modification_times():
    # libunftp 0.24 answers MFMT itself (500); SITE MFMT is the same command through its SITE hook.
    expect_error("500", lambda: ftp.sendcmd(f"MFMT 20010909014640 /{top}/small.bin"))
    reply = ftp.sendcmd(f"SITE MFMT 20010909014640 /{top}/small.bin")
    assert reply.startswith("213 Modify=20010909014640"), reply
    assert ftp.sendcmd("MDTM small.bin") == "213 20010909014640", ftp.sendcmd("MDTM small.bin")
    facts = dict(ftp.mlsd())
    assert facts["small.bin"]["modify"].startswith("20010909014640"), facts["small.bin"]
    lines = []
    ftp.retrlines("LIST", lines.append)
    assert any(line.endswith(" small.bin") and " 2001 " in line for line in lines), lines
    # lftp's SITE UTIME forms, on a file and on a directory; the file's bytes are unchanged.
    ftp.sendcmd(f"SITE UTIME 20200229120000 /{top}/medium.bin")
    assert ftp.sendcmd("MDTM medium.bin") == "213 20200229120000"
    ftp.sendcmd(f"SITE UTIME /{top} 20200101000000 20210101000000 20200101000000 UTC")
    assert ftp.sendcmd(f"MDTM /{top}") == "213 20210101000000"
    assert retr(ftp, "small.bin") == small and retr(ftp, "medium.bin") == medium
    # Hostile: bad times, a relative path after CWD (SITE sees no working directory), a missing
    # name, the root (no link to hold a time), a bad cap path.
    for bad in ["20230229000000", "20241301000000", "19691231235959", "yesterday", "2001090901464"]:
        expect_error("501", lambda: ftp.sendcmd(f"SITE MFMT {bad} /{top}/small.bin"))
    expect_error("501", lambda: ftp.sendcmd(f"SITE MFMT 20010909014640"))
    expect_error("501", lambda: ftp.sendcmd("SITE MFMT 20010909014640 small.bin"))
    expect_error("550", lambda: ftp.sendcmd(f"SITE MFMT 20010909014640 /{top}/no-such-file"))
    expect_error("550", lambda: ftp.sendcmd("SITE MFMT 20010909014640 /"))
    expect_error("553", lambda: ftp.sendcmd("SITE MFMT 20010909014640 /uri/not-a-cap"))
    assert ftp.sendcmd("MDTM small.bin") == "213 20010909014640"


check("SITE MFMT / SITE UTIME set the time MDTM, MLSD and LIST show", modification_times)
check("STOR over a directory is refused", lambda: (ftp.mkd("sub"), expect_error("550", lambda: stor(ftp, "sub", b"x"))))


def renames():
    stor(ftp, "r1.bin", b"one")
    ftp.rename("r1.bin", "sub/r2.bin")  # across directories
    assert retr(ftp, "sub/r2.bin") == b"one"
    stor(ftp, "r3.bin", b"three")
    ftp.rename("r3.bin", "sub/r2.bin")  # replaces a file
    assert retr(ftp, "sub/r2.bin") == b"three"
    ftp.rename("sub/r2.bin", "sub/r4.bin")  # within a directory
    assert ftp.nlst("sub") in (["r4.bin"], ["sub/r4.bin"]), ftp.nlst("sub")
    ftp.mkd("other")
    expect_error("550", lambda: ftp.rename("small.bin", "other"))  # never over a directory
    ftp.rmd("other")


check("RNFR/RNTO: across, within, over files only", renames)


def removals():
    expect_error("550", lambda: ftp.rmd("sub"))  # not empty
    ftp.delete("sub/r4.bin")
    ftp.rmd("sub")
    expect_error("550", lambda: ftp.delete("sub"))
    expect_error("550", lambda: ftp.delete("no-such-file"))
    expect_error("550", lambda: retr(ftp, "no-such-file"))
    expect_error("550", lambda: ftp.cwd("small.bin"))


check("DELE, RMD (refuses non-empty), errors for missing names", removals)


def traversal():
    ftp.cwd("/../../..")
    root = sorted(ftp.nlst())
    ftp.cwd("/")
    assert sorted(ftp.nlst()) == root
    assert top in root, root
    expect_error("550", lambda: retr(ftp, "../../../../etc/passwd"))
    assert retr(ftp, f"../../{top}/small.bin") == small
    ftp.cwd(top)


check("path traversal is clamped at the root", traversal)


def uri_paths():
    request = urllib.request.Request(node_url.rstrip("/") + "/uri?t=mkdir", method="POST")
    cap = urllib.request.urlopen(request, timeout=30).read().decode().strip()
    assert cap.startswith("URI:DIR2:"), cap
    ftp.cwd(f"/uri/{cap}")
    stor(ftp, "by-cap.bin", b"reached by its cap")
    assert ftp.nlst() == ["by-cap.bin"], ftp.nlst()
    assert retr(ftp, f"/uri/{cap}/by-cap.bin") == b"reached by its cap"
    listing = urllib.request.urlopen(f"{node_url.rstrip('/')}/uri/{cap}?t=json", timeout=30).read().decode()
    assert "by-cap.bin" in listing, listing
    # After /uri/ comes a cap: anything else is refused (553), never taken for a child of a root
    # child named `uri`.
    expect_error("553", lambda: ftp.size("/uri/not-a-cap"))
    expect_error("553", lambda: ftp.mkd("/uri/not-a-cap"))
    ftp.cwd(f"/{top}")


check("/uri/CAP paths reach caps directly, /uri/not-a-cap is refused", uri_paths)


def malformed():
    expect_error("500", lambda: ftp.sendcmd("BOGUS"))
    expect_error("500", lambda: ftp.sendcmd("X" * 2000))
    assert ftp.sendcmd("NOOP").startswith("200")
    # A command without its argument gets 501 (libunftp then ends that session); other sessions
    # are not disturbed.
    other = connect()
    expect_error("501", lambda: other.sendcmd("RETR"))
    other.close()
    other = connect()
    expect_error("50", lambda: other.sendcmd("MKD"))
    other.close()
    assert ftp.sendcmd("NOOP").startswith("200")
    assert retr(ftp, "small.bin") == small


check("malformed commands get 500/501 and the session goes on", malformed)


def data_connection_without_tls():
    # A protected data connection that speaks no TLS: that transfer gets nothing (libunftp's data
    # task gives up), and every other session, this one's included, goes on.
    other = connect()
    other.sock.settimeout(3)
    data_host, data_port = ftplib.parse227(other.sendcmd("PASV"))
    raw = socket.create_connection((data_host, data_port), timeout=3)
    raw.sendall(b"not a TLS ClientHello\r\n" * 8)
    other.putcmd(f"RETR /{top}/small.bin")
    try:
        reply = other.getmultiline()
        if reply.startswith("150"):
            reply = other.getmultiline()
        assert not reply.startswith("226"), reply
    except (socket.timeout, TimeoutError, ssl.SSLError, EOFError, ConnectionError):
        pass
    raw.close()
    other.sock.close()
    assert ftp.sendcmd("NOOP").startswith("200")
    assert retr(ftp, "small.bin") == small
    third = connect()
    assert retr(third, f"/{top}/small.bin") == small
    third.quit()


if security == "tls":
    check("a data connection without TLS ends that transfer only", data_connection_without_tls)


def cleanup():
    for name in ftp.nlst():
        ftp.delete(name)
    ftp.cwd("/")
    ftp.rmd(top)


check("cleanup", cleanup)
ftp.quit()
print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
