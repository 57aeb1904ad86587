"""Tahoe-LAFS 1.20's own storage client (allmydata.storage.http_client) against two storage servers,
a real Tahoe 1.20 node (the ground truth) and a Tessera node, through every endpoint and every error
either can answer. Each case runs the same calls, in the same order, against both; the outcome the
Tahoe client sees (its return value, or its exception class and HTTP status) must be the same.
A few cases use the client's connection for a hand-made request (malformed CBOR, missing headers);
their outcome is the HTTP status.

Prints one line per case (`ok: ... -> tessera OUTCOME (tahoe OUTCOME)`) and exits 1 on any mismatch
that is not one of the DEVIATIONS below (each a deliberate, documented difference).

Usage: python tahoe_storage_errors.py TAHOE TESSERA_NURL   (with the venv's python; TAHOE is a NURL or
a Tahoe node directory, whose NURL is computed from node.pem and storage.furl as Tahoe does)
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from base64 import b64encode, urlsafe_b64encode

import treq
from attrs import evolve
from hyperlink import DecodedURL
from twisted.internet import defer, task
from twisted.web.http_headers import Headers

from allmydata.storage.http_client import (
    ClientException,
    ImmutableCreateResult,
    ReadTestWriteResult,
    ReadVector,
    StorageClientFactory,
    StorageClientGeneral,
    StorageClientImmutables,
    StorageClientMutables,
    TestVector,
    TestWriteVectors,
    UploadProgress,
    WriteVector,
)
from allmydata.storage.http_common import swissnum_auth_header
from allmydata.util.cbor import dumps

# Cases where Tessera deliberately answers differently from Tahoe 1.20: what Tessera must answer
# instead, and why. Only for requests Tahoe's client never makes on its own, or where Tahoe fails with
# an internal error (500) or a malformed response.
DEVIATIONS = {
    "allocate share number 300": (
        ("ClientException", 400),
        "share numbers are at most 255 (N is at most 256); Tahoe accepts any",
    ),
    "write past the allocated size": (
        ("ClientException", 416),
        "Tahoe lets DataTooLargeError escape as a 500; the write's range is what is wrong",
    ),
    "write with a body longer than its Content-Range": (
        ("status", 413),
        "Tahoe writes the declared range and silently drops the rest of the body",
    ),
    "write with a body shorter than its Content-Range": (
        ("status", 400),
        "Tahoe fails an assertion (500)",
    ),
    "read-test-write with a 16-byte write enabler": (
        ("status", 400),
        "write enablers are 32 bytes (Tahoe's client always sends 32); Tahoe stores a short one zero-padded",
    ),
    "immutable read of a mutable share": (
        ("ClientException", 404),
        "Tahoe fails inside (its client raises ValueError: the answer is not octet-stream); there is no such immutable share",
    ),
    "immutable list of a mutable storage index": (
        ("returns", "{}"),
        "Tahoe answers 500 (it opens the mutable container as an immutable one); there are no immutable shares",
    ),
    "mutable list of an immutable storage index": (
        ("returns", "{}"),
        "Tahoe lists every share file; there are no mutable shares",
    ),
    "mutable read of an immutable share": (
        ("ClientException", 404),
        "Tahoe fails inside (its client raises ValueError: the answer is not octet-stream); there is no such mutable share",
    ),
    "read-test-write onto an immutable storage index": (
        ("ClientException", 400),
        "Tahoe answers 500 (it opens the immutable share as a mutable container); the shares are immutable",
    ),
    "allocate onto a mutable storage index": (
        ("returns", "already-have={} allocated={5}"),
        "Tahoe answers 500 (it opens the mutable share as an immutable one); share 0 is taken by a mutable share",
    ),
}

CBOR = "application/cbor"


def describe(outcome) -> str:
    kind, value = outcome
    if kind == "status":
        return f"HTTP {value}"
    if kind == "returns":
        return f"returns {value}"
    return f"{kind} {value}" if value is not None else kind


def normalize(value):
    """A comparable, printable form of what a client call returned."""
    if value is None:
        return "None"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(str(v) for v in sorted(value)) + "}"
    if isinstance(value, bytes):
        return f"{len(value)} bytes sha256:{hashlib.sha256(value).hexdigest()[:12]}"
    if isinstance(value, ImmutableCreateResult):
        return f"already-have={normalize(value.already_have)} allocated={normalize(value.allocated)}"
    if isinstance(value, UploadProgress):
        ranges = [(start, end) for start, end, _ in value.required.ranges()]
        return f"finished={value.finished} required={ranges}"
    if isinstance(value, ReadTestWriteResult):
        reads = {
            shnum: [normalize(bytes(r)) for r in reads] for shnum, reads in sorted(value.reads.items())
        }
        return f"success={value.success} reads={reads}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {normalize(v)}" for k, v in sorted(value.items())) + "}"
    return repr(value)


class Run:
    """One server's run of the scenario: the outcome of each case, in order."""

    def __init__(self, client, data):
        self.client = client
        self.general = StorageClientGeneral(client)
        self.imm = StorageClientImmutables(client)
        self.mut = StorageClientMutables(client)
        self.data = data
        self.outcomes: dict[str, tuple] = {}

    async def call(self, label, deferred, shape=normalize):
        try:
            value = await deferred
        except ClientException as e:
            outcome = ("ClientException", e.code)
        except Exception as e:  # any other failure is an outcome to compare too
            outcome = (type(e).__name__, None)
        else:
            outcome = ("returns", shape(value))
        assert label not in self.outcomes, label
        self.outcomes[label] = outcome
        return outcome

    async def raw(self, label, method, path, headers=None, body=None, authorization=True):
        """A hand-made request on the client's connection pool; the outcome is the status."""
        all_headers = Headers()
        if authorization:
            all_headers.addRawHeader("Authorization", swissnum_auth_header(self.client._swissnum))
        for name, value in (headers or []):
            all_headers.addRawHeader(name, value)
        url = self.client.relative_url(path)
        try:
            response = await self.client._treq.request(method, url, headers=all_headers, data=body)
            await treq.content(response)
        except Exception as e:  # a dropped connection is an outcome to compare too
            outcome = (type(e).__name__, None)
        else:
            outcome = ("status", response.code)
        assert label not in self.outcomes, label
        self.outcomes[label] = outcome


def secret_header(kind: str, value: bytes) -> tuple[str, bytes]:
    return ("X-Tahoe-Authorization", kind.encode() + b" " + b64encode(value))


def si_text(si: bytes) -> str:
    from allmydata.storage.common import si_b2a

    return si_b2a(si).decode()


async def scenario(r: Run):
    d = r.data
    renew, cancel, upload, other = d["renew"], d["cancel"], d["upload"], d["other"]
    we, wrong_we = d["we"], d["wrong_we"]
    si, si2, si_unknown, msi, msi_unknown = d["si"], d["si2"], d["si_unknown"], d["msi"], d["msi_unknown"]
    share = d["share"]
    imm, mut, gen = r.imm, r.mut, r.general

    # ---- version and authorization
    await r.call(
        "version",
        gen.get_version(),
        lambda v: sorted(v[b"http://allmydata.org/tahoe/protocols/storage/v1"]) + sorted(v),
    )
    wrong_swissnum = StorageClientGeneral(evolve(r.client, swissnum=b"wrong" + r.client._swissnum))
    await r.call("version with a wrong swissnum", wrong_swissnum.get_version())
    await r.raw("version without Authorization", "GET", "/storage/v1/version", authorization=False)
    await r.raw(
        "version with a non-UTF-8 Authorization",
        "GET",
        "/storage/v1/version",
        [("Authorization", b"Tahoe-LAFS \xff\xfe")],
        authorization=False,
    )
    await r.raw("version accepting only JSON", "GET", "/storage/v1/version", [("Accept", "application/json")])
    await r.raw("DELETE of a storage index (no such method)", "DELETE", f"/storage/v1/immutable/{si_text(si)}")
    await r.raw("list of a malformed storage index", "GET", "/storage/v1/immutable/notastorageindex/shares")
    # Tessera's removal of a corrupt share (an extension): a Tahoe server has no such route, and a
    # Tessera server holds no such share; both answer 404, which is what a Tessera repairer expects
    # from a Tahoe server (it then places the good copy elsewhere).
    await r.raw(
        "Tessera's remove-corrupt request for a share the server does not hold",
        "POST",
        f"/storage/v1/tessera/immutable/{si_text(si_unknown)}/0/remove-corrupt",
        [("Content-Type", "application/cbor")],
        dumps({"reason": "corrupt"}),
    )

    # ---- immutable: allocate
    await r.call("allocate shares 0,1,2", imm.create(si, {0, 1, 2}, 100, upload, renew, cancel))
    await r.call(
        "allocate shares in progress, another upload secret",
        imm.create(si, {0, 1, 2, 3}, 100, other, renew, cancel),
    )
    await r.call("list shares while uploads are in progress", imm.list_shares(si))
    await r.call("read of a share still being uploaded", imm.read_share_chunk(si, 1, 0, 10))
    await r.call("lease renewal with only uploads in progress", gen.add_or_renew_lease(si, renew, cancel))
    await r.call("advise corrupt of a share still being uploaded", imm.advise_corrupt_share(si, 1, "bad"))

    # ---- immutable: write
    await r.call("write share 0 bytes 0-49", imm.write_share_chunk(si, 0, upload, 0, share[:50]))
    await r.call("write share 0 bytes 0-49 again, same data", imm.write_share_chunk(si, 0, upload, 0, share[:50]))
    await r.call(
        "write share 0 bytes 30-59 overlapping with other data",
        imm.write_share_chunk(si, 0, upload, 30, b"x" * 30),
    )
    await r.call(
        "write share 0 bytes 40-69 overlapping with the same data",
        imm.write_share_chunk(si, 0, upload, 40, share[40:70]),
    )
    await r.call(
        "write with a wrong upload secret", imm.write_share_chunk(si, 0, other, 70, share[70:80])
    )
    await r.call("write to a share that was not allocated", imm.write_share_chunk(si, 7, upload, 0, b"abc"))
    await r.call("write to an unknown storage index", imm.write_share_chunk(si_unknown, 0, upload, 0, b"abc"))
    await r.call("write past the allocated size", imm.write_share_chunk(si, 0, upload, 90, b"y" * 20))
    await r.raw(
        "write without Content-Range",
        "PATCH",
        f"/storage/v1/immutable/{si_text(si)}/0",
        [secret_header("upload-secret", upload)],
        share[70:80],
    )
    await r.raw(
        "write without the upload secret",
        "PATCH",
        f"/storage/v1/immutable/{si_text(si)}/0",
        [("Content-Range", "bytes 70-79/*")],
        share[70:80],
    )
    await r.raw(
        "write with a body longer than its Content-Range",
        "PATCH",
        f"/storage/v1/immutable/{si_text(si)}/2",
        [secret_header("upload-secret", upload), ("Content-Range", "bytes 0-9/*")],
        share[:20],
    )
    await r.raw(
        "write with a body shorter than its Content-Range",
        "PATCH",
        f"/storage/v1/immutable/{si_text(si)}/2",
        [secret_header("upload-secret", upload), ("Content-Range", "bytes 50-69/*")],
        share[50:60],
    )
    await r.call("write the rest of share 0", imm.write_share_chunk(si, 0, upload, 70, share[70:100]))
    await r.call("write to a complete share", imm.write_share_chunk(si, 0, upload, 0, share[:10]))

    # ---- immutable: abort
    await r.call("abort a complete share", imm.abort_upload(si, 0, upload))
    await r.call("abort with a wrong upload secret", imm.abort_upload(si, 1, other))
    await r.call("abort share 1", imm.abort_upload(si, 1, upload))
    await r.call("abort share 1 again", imm.abort_upload(si, 1, upload))
    await r.call("write to an aborted share", imm.write_share_chunk(si, 1, upload, 0, share[:10]))
    await r.call("abort on an unknown storage index", imm.abort_upload(si_unknown, 0, upload))
    await r.call("abort of a share never allocated", imm.abort_upload(si, 9, upload))

    # ---- immutable: list, read
    await r.call("list shares", imm.list_shares(si))
    await r.call("list shares of an unknown storage index", imm.list_shares(si_unknown))
    await r.call("read bytes 0-99", imm.read_share_chunk(si, 0, 0, 100))
    await r.call("read bytes 10-19", imm.read_share_chunk(si, 0, 10, 10))
    await r.call("read bytes 90-199 (past the end)", imm.read_share_chunk(si, 0, 90, 110))
    await r.call("read from the end (offset 100)", imm.read_share_chunk(si, 0, 100, 10))
    await r.call("read far past the end (offset 5000)", imm.read_share_chunk(si, 0, 5000, 10))
    await r.call("read of an unknown share", imm.read_share_chunk(si, 5, 0, 10))
    await r.call("read of an unknown storage index", imm.read_share_chunk(si_unknown, 0, 0, 10))
    path0 = f"/storage/v1/immutable/{si_text(si)}/0"
    await r.raw("read without Range (whole share)", "GET", path0)
    await r.raw("read with an open-ended Range", "GET", path0, [("Range", "bytes=5-")])
    await r.raw("read with two ranges", "GET", path0, [("Range", "bytes=0-1,5-6")])
    await r.raw("read with a non-bytes Range", "GET", path0, [("Range", "items=0-1")])
    await r.raw("read with a backwards Range", "GET", path0, [("Range", "bytes=9-3")])

    # ---- immutable: allocate again, sizes
    await r.call("allocate again after share 0 completed", imm.create(si, {0, 1, 2, 5}, 100, upload, renew, cancel))
    await r.call("allocate only share 6 (already-have lists all)", imm.create(si, {6}, 100, upload, renew, cancel))
    await r.call("allocate share number 300", imm.create(d["si3"], {300}, 10, upload, renew, cancel))
    await r.call("allocate share 9", imm.create(si2, {9}, 10, upload, renew, cancel))
    await r.call("write share 9", imm.write_share_chunk(si2, 9, upload, 0, share[:10]))
    await r.call("list shares with share 9", imm.list_shares(si2))
    await r.call("allocate with size 0", imm.create(si2, {1}, 0, upload, renew, cancel))
    await r.call("allocate more than the disk holds", imm.create(si2, {2}, 2**62, upload, renew, cancel))
    await r.call("allocate no shares", imm.create(si2, set(), 10, upload, renew, cancel))
    sipath = f"/storage/v1/immutable/{si_text(si2)}"
    lease_headers = [secret_header("lease-renew-secret", renew), secret_header("lease-cancel-secret", cancel)]
    all3 = lease_headers + [secret_header("upload-secret", upload)]
    await r.raw("allocate with malformed CBOR", "POST", sipath, all3 + [("Content-Type", CBOR)], b"\xff\x00garbage")
    await r.raw(
        "allocate without allocated-size",
        "POST",
        sipath,
        all3 + [("Content-Type", CBOR)],
        dumps({"share-numbers": {1}}),
    )
    await r.raw(
        "allocate with a negative size",
        "POST",
        sipath,
        all3 + [("Content-Type", CBOR)],
        dumps({"share-numbers": {1}, "allocated-size": -5}),
    )
    await r.raw(
        "allocate 257 shares",
        "POST",
        sipath,
        all3 + [("Content-Type", CBOR)],
        dumps({"share-numbers": set(range(257)), "allocated-size": 10}),
    )
    await r.raw(
        "allocate with a JSON Content-Type",
        "POST",
        sipath,
        all3 + [("Content-Type", "application/json")],
        b'{"share-numbers": [1], "allocated-size": 10}',
    )
    await r.raw(
        "allocate with a 9000-byte body",
        "POST",
        sipath,
        all3 + [("Content-Type", CBOR)],
        dumps({"share-numbers": {1}, "allocated-size": 10, "padding": b"p" * 9000}),
    )
    await r.raw(
        "allocate without the upload secret",
        "POST",
        sipath,
        lease_headers + [("Content-Type", CBOR)],
        dumps({"share-numbers": {1}, "allocated-size": 10}),
    )
    await r.raw(
        "allocate with a 31-byte lease renew secret",
        "POST",
        sipath,
        [
            secret_header("lease-renew-secret", renew[:31]),
            secret_header("lease-cancel-secret", cancel),
            secret_header("upload-secret", upload),
            ("Content-Type", CBOR),
        ],
        dumps({"share-numbers": {1}, "allocated-size": 10}),
    )
    await r.raw(
        "allocate with an unknown secret kind",
        "POST",
        sipath,
        all3 + [secret_header("frobnicate", upload), ("Content-Type", CBOR)],
        dumps({"share-numbers": {1}, "allocated-size": 10}),
    )
    await r.raw(
        "allocate with a secret that is not base64",
        "POST",
        sipath,
        lease_headers + [("X-Tahoe-Authorization", "upload-secret !!!"), ("Content-Type", CBOR)],
        dumps({"share-numbers": {1}, "allocated-size": 10}),
    )

    # ---- immutable: leases, corruption advice
    await r.call("lease renewal", gen.add_or_renew_lease(si, renew, cancel))
    await r.call("lease with new secrets", gen.add_or_renew_lease(si, other[:32], other[32:64]))
    await r.call("lease renewal of an unknown storage index", gen.add_or_renew_lease(si_unknown, renew, cancel))
    await r.raw(
        "lease renewal without the cancel secret",
        "PUT",
        f"/storage/v1/lease/{si_text(si)}",
        [secret_header("lease-renew-secret", renew)],
    )
    await r.call("advise corrupt share 0", imm.advise_corrupt_share(si, 0, "hash mismatch"))
    await r.call("advise corrupt of an unknown share", imm.advise_corrupt_share(si, 4, "bad"))
    await r.call("advise corrupt of an unknown storage index", imm.advise_corrupt_share(si_unknown, 0, "bad"))
    await r.raw(
        "advise corrupt with an empty reason",
        "POST",
        f"{path0}/corrupt",
        [("Content-Type", CBOR)],
        dumps({"reason": ""}),
    )
    await r.raw(
        "advise corrupt with a 40000-byte reason",
        "POST",
        f"{path0}/corrupt",
        [("Content-Type", CBOR)],
        dumps({"reason": "r" * 40000}),
    )
    await r.raw(
        "advise corrupt with malformed CBOR",
        "POST",
        f"{path0}/corrupt",
        [("Content-Type", CBOR)],
        b"\xa1\x66reason",
    )

    # ---- mutable: read-test-write
    new = TestWriteVectors(write_vectors=[WriteVector(0, share)])
    await r.call(
        "read-test-write creating shares 0 and 1",
        mut.read_test_write_chunks(msi, we, renew, cancel, {0: new, 1: new}, [ReadVector(0, 10)]),
    )
    await r.call(
        "read-test-write with a wrong write enabler",
        mut.read_test_write_chunks(msi, wrong_we, renew, cancel, {0: new}, [ReadVector(0, 10)]),
    )
    await r.call(
        "read-test-write reading only",
        mut.read_test_write_chunks(msi, we, renew, cancel, {}, [ReadVector(0, 10), ReadVector(95, 10)]),
    )
    await r.call(
        "read-test-write with a failing test",
        mut.read_test_write_chunks(
            msi,
            we,
            renew,
            cancel,
            {0: TestWriteVectors([TestVector(0, 4, b"nope")], [WriteVector(0, b"XXXX")])},
            [ReadVector(0, 4)],
        ),
    )
    await r.call("read after the failing test", mut.read_share_chunk(msi, 0, 0, 4))
    await r.call(
        "read-test-write with a passing test",
        mut.read_test_write_chunks(
            msi,
            we,
            renew,
            cancel,
            {0: TestWriteVectors([TestVector(0, 4, share[:4])], [WriteVector(0, b"ABCD")])},
            [ReadVector(0, 4)],
        ),
    )
    await r.call("read after the passing test", mut.read_share_chunk(msi, 0, 0, 4))
    await r.call(
        "read-test-write testing a missing share for empty",
        mut.read_test_write_chunks(
            msi, we, renew, cancel, {7: TestWriteVectors([TestVector(0, 4, b"")], [])}, []
        ),
    )
    await r.call(
        "read-test-write testing past the end for empty",
        mut.read_test_write_chunks(
            msi, we, renew, cancel, {0: TestWriteVectors([TestVector(500, 4, b"")], [])}, []
        ),
    )
    await r.call(
        "read-test-write reading past the end",
        mut.read_test_write_chunks(msi, we, renew, cancel, {}, [ReadVector(1000, 10)]),
    )
    await r.call(
        "read-test-write writing past the end (a hole)",
        mut.read_test_write_chunks(
            msi, we, renew, cancel, {1: TestWriteVectors(write_vectors=[WriteVector(150, b"tail")])}, []
        ),
    )
    await r.call("read across the hole", mut.read_share_chunk(msi, 1, 95, 60))
    await r.call(
        "read-test-write truncating with new-length",
        mut.read_test_write_chunks(msi, we, renew, cancel, {1: TestWriteVectors(new_length=50)}, []),
    )
    await r.call("read of the truncated share", mut.read_share_chunk(msi, 1, 0, 200))
    await r.call(
        "read-test-write deleting with new-length 0",
        mut.read_test_write_chunks(msi, we, renew, cancel, {1: TestWriteVectors(new_length=0)}, []),
    )
    await r.call("mutable list after the delete", mut.list_shares(msi))
    await r.call("mutable read of the deleted share", mut.read_share_chunk(msi, 1, 0, 10))
    await r.call(
        "read-test-write on an unknown storage index, reading",
        mut.read_test_write_chunks(msi_unknown, we, renew, cancel, {}, [ReadVector(0, 10)]),
    )
    mpath = f"/storage/v1/mutable/{si_text(msi)}/read-test-write"
    rtw_secrets = lease_headers + [secret_header("write-enabler", we)]
    await r.raw("read-test-write with malformed CBOR", "POST", mpath, rtw_secrets + [("Content-Type", CBOR)], b"\x9f")
    await r.raw(
        "read-test-write without the write enabler",
        "POST",
        mpath,
        lease_headers + [("Content-Type", CBOR)],
        dumps({"test-write-vectors": {}, "read-vector": []}),
    )
    await r.raw(
        "read-test-write without read-vector",
        "POST",
        mpath,
        rtw_secrets + [("Content-Type", CBOR)],
        dumps({"test-write-vectors": {}}),
    )
    await r.raw(
        "read-test-write with 31 read vectors",
        "POST",
        mpath,
        rtw_secrets + [("Content-Type", CBOR)],
        dumps({"test-write-vectors": {}, "read-vector": [{"offset": 0, "size": 1}] * 31}),
    )
    await r.raw(
        "read-test-write with a 16-byte write enabler",
        "POST",
        f"/storage/v1/mutable/{si_text(d['msi2'])}/read-test-write",
        lease_headers + [secret_header("write-enabler", we[:16]), ("Content-Type", CBOR)],
        dumps({"test-write-vectors": {0: {"test": [], "write": [{"offset": 0, "data": b"x"}], "new-length": None}}, "read-vector": []}),
    )

    # ---- mutable: read, list, lease, corruption advice
    await r.call("mutable read bytes 0-9", mut.read_share_chunk(msi, 0, 0, 10))
    await r.call("mutable read past the end", mut.read_share_chunk(msi, 0, 95, 10))
    await r.call("mutable read from the end", mut.read_share_chunk(msi, 0, 100, 10))
    await r.call("mutable read of an unknown share", mut.read_share_chunk(msi, 3, 0, 10))
    await r.call("mutable read of an unknown storage index", mut.read_share_chunk(msi_unknown, 0, 0, 10))
    mpath0 = f"/storage/v1/mutable/{si_text(msi)}/0"
    await r.raw("mutable read without Range", "GET", mpath0)
    await r.raw("mutable read with an open-ended Range", "GET", mpath0, [("Range", "bytes=5-")])
    await r.call("mutable list shares", mut.list_shares(msi))
    await r.call("mutable list of an unknown storage index", mut.list_shares(msi_unknown))
    await r.call("lease renewal of a mutable", gen.add_or_renew_lease(msi, renew, cancel))
    await r.call("mutable advise corrupt", mut.advise_corrupt_share(msi, 0, "bad signature"))
    await r.call("mutable advise corrupt of an unknown share", mut.advise_corrupt_share(msi, 3, "bad"))
    await r.call(
        "mutable advise corrupt of an unknown storage index", mut.advise_corrupt_share(msi_unknown, 0, "bad")
    )

    # ---- the wrong kind: an immutable share through the mutable API and the other way round
    await r.call("immutable read of a mutable share", imm.read_share_chunk(msi, 0, 0, 10))
    await r.call("immutable list of a mutable storage index", imm.list_shares(msi))
    await r.call("mutable list of an immutable storage index", mut.list_shares(si))
    await r.call("mutable read of an immutable share", mut.read_share_chunk(si, 0, 0, 10))
    await r.call(
        "read-test-write onto an immutable storage index",
        mut.read_test_write_chunks(si, we, renew, cancel, {0: new}, [ReadVector(0, 10)]),
    )
    await r.call("allocate onto a mutable storage index", imm.create(msi, {0, 5}, 100, upload, renew, cancel))


def tahoe_node_nurl(node_dir: str) -> str:
    """The HTTPS storage NURL of a Tahoe node: SPKI hash of its certificate, swissnum of its FURL."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = open(os.path.join(node_dir, "private", "node.pem"), "rb").read()
    cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE") :])
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    pin = urlsafe_b64encode(hashlib.sha256(spki).digest()).rstrip(b"=").decode()
    furl = open(os.path.join(node_dir, "private", "storage.furl")).read().strip()
    swissnum = furl.rsplit("/", 1)[1]
    location = furl.split("@tcp:")[1].split("/")[0]
    return f"pb://{pin}@{location}/{swissnum}#v=1"


async def main(reactor, tahoe_nurl, tessera_nurl):
    if not tahoe_nurl.startswith("pb://"):
        tahoe_nurl = tahoe_node_nurl(tahoe_nurl)
    rng = random.Random(1320)

    def rand(n: int) -> bytes:
        return bytes(rng.getrandbits(8) for _ in range(n))

    data = {
        "renew": rand(32),
        "cancel": rand(32),
        "upload": rand(32),
        "other": rand(64),
        "we": rand(32),
        "wrong_we": rand(32),
        "share": rand(100),
    }
    factory = StorageClientFactory({"tcp": "tcp"}, None)
    runs = {}
    for name, nurl in (("tahoe", tahoe_nurl), ("tessera", tessera_nurl)):
        client = await factory.create_storage_client(DecodedURL.from_text(nurl), reactor)
        # Fresh storage indexes for each run (so the script can also be run twice against one server).
        sis = {n: os.urandom(16) for n in ("si", "si2", "si3", "si_unknown", "msi", "msi2", "msi_unknown")}
        runs[name] = Run(client, {**data, **sis})
        await scenario(runs[name])
        await client.shutdown()
    failures = 0
    for label, tahoe in runs["tahoe"].outcomes.items():
        ours = runs["tessera"].outcomes[label]
        line = f"{label} -> {describe(ours)} (tahoe {describe(tahoe)})"
        if ours == tahoe:
            print(f"ok: {line}")
        elif label in DEVIATIONS and ours == DEVIATIONS[label][0]:
            print(f"ok, differs on purpose ({DEVIATIONS[label][1]}): {line}")
        else:
            print(f"MISMATCH: {line}")
            failures += 1
    stale = set(DEVIATIONS) - set(runs["tahoe"].outcomes)
    if stale:
        print(f"MISMATCH: deviations listed for cases that do not exist: {sorted(stale)}")
        failures += 1
    print(f"{len(runs['tahoe'].outcomes)} cases, {failures} mismatches")
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1], sys.argv[2])))
