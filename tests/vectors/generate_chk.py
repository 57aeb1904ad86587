#!/usr/bin/env python3
"""Generate CHK/LIT immutable-file test vectors with the REAL Tahoe-LAFS code.

Run through ``generate.sh`` (which picks the virtualenv); directly:

    /opt/tahoe-venv/bin/python tests/vectors/generate_chk.py [OUTPUT.json]

(default output: ``chk_vectors.json`` next to this script).

How the vectors are produced
----------------------------
Nothing about the encoding is reimplemented here.  Every case is uploaded
with Tahoe's own client-side upload stack, exactly as a Tahoe node does it:

    allmydata.immutable.upload.Uploader.upload(upload.Data(plaintext, convergence))
      -> size <= Uploader.URI_LIT_SIZE_THRESHOLD (55): LiteralUploader -> URI:LIT:
      -> otherwise: EncryptAnUploadable (convergent key, AES-CTR)
                    -> CHKUploader -> Tahoe2ServerSelector (servers of happiness)
                    -> encode.Encoder (zfec, hash trees, UEB)
                    -> layout.WriteBucketProxy (share data layout v1/v2)
                    -> remote bucket writer .callRemote("write"/"close")

So LIT caps come from Tahoe's uploader logic (LiteralUploader), not from
allmydata.uri.LiteralFileURI called directly.

Only the network/storage edge is faked, in memory:

* ``FakeStorageBroker.get_servers_for_psi`` returns min(n, 10) fake servers,
  ordered by Tahoe's own ``permute_server_hash`` like the real broker, and
  shares.happy is set to that number (placement never affects share data);
* ``FakeStorageServer`` implements the two IStorageServer calls the uploader
  makes (``get_buckets`` -> no existing shares, ``allocate_buckets``);
* ``FakeBucketWriter`` stands in for the RIBucketWriter remote reference and
  records the bytes of every ``write(offset, data)`` call.

The recorded bytes are therefore exactly the "share data" a client sends to a
storage server (header, blocks, hash trees, share hashes, UEB; see
tahoe-formats.md section 4.1), *not* the server's on-disk container (12-byte
header + leases).  The writer checks that the writes are contiguous, that the
total equals the allocated size, and that ``close`` is called.

Determinism: the key is convergent (Tahoe's convergence hasher with the
per-case secret), the lease secret is a fixed constant (it only influences
lease secrets, which are not part of the share data), and no random values
reach the output.  Running the script twice gives byte-identical JSON.

Plaintext rule: plaintext = (seed * (length // len(seed) + 1))[:length]
"""

import base64
import hashlib
import json
import os
import sys
import time

from zope.interface import implementer
from twisted.application import service
from twisted.internet import defer, task

import allmydata
from allmydata.client import SecretHolder
from allmydata.immutable import upload
from allmydata.interfaces import IServer, IStorageServer
from allmydata.util.hashutil import permute_server_hash
from allmydata import uri as tahoe_uri

MiB = 1024 * 1024
DEFAULT_MSS = MiB  # allmydata.interfaces.DEFAULT_IMMUTABLE_MAX_SEGMENT_SIZE

# Number of fake storage servers offered to the uploader (at most).
MAX_SERVERS = 10

# share_data_b64 is only embedded when share_size * n <= this many bytes.
EMBED_LIMIT = 40000

PLAINTEXT_RULE = "plaintext = (seed * (length // len(seed) + 1))[:length]"

# --- seeds and convergence secrets (all fixed) -----------------------------
SEED_BYTES256 = bytes(range(256))
# Seeds used by the published tahoe-lafs integration vectors.
SEED_A = b"a"
SEED_C = b"c"
SEED_PUB_131071 = base64.b64decode("LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564=")
SEED_PUB_131073 = base64.b64decode("/N4rLtula/QIYB+3If6bXDONEO5CnqBPrlURto+/j7k=")
SEED_HASH = hashlib.sha256(b"Tessera CHK test vector seed").digest()  # 32 bytes
SEED_PRIME = bytes((i * 7 + 3) % 256 for i in range(251))  # odd length

CONV_A16 = b"a" * 16
CONV_32 = hashlib.sha256(b"Tessera CHK test vector convergence secret").digest()
CONV_HELLO16 = hashlib.sha256(b"Hello world").digest()[:16]  # published-vector secret #2
CONV_EMPTY = b""


def plaintext_for(seed, length):
    return (seed * (length // len(seed) + 1))[:length]


# --- the list of cases -----------------------------------------------------
def build_cases():
    cases = []

    def add(name, seed, length, conv, k, n, mss=DEFAULT_MSS):
        cases.append(dict(name=name, seed=seed, length=length, conv=conv,
                          k=k, n=n, mss=mss))

    # Size series, 3-of-10, convergence "a"*16, default 1 MiB segments.
    for length, label in [
        (0, "empty (LIT)"),
        (1, "1 byte (LIT)"),
        (55, "55 bytes, largest LIT"),
        (56, "56 bytes, smallest CHK"),
        (1048575, "1 MiB - 1, one segment"),
        (1048576, "1 MiB, one segment"),
        (1048577, "1 MiB + 1, segment 1048578 exactly covers it"),
        (1048579, "1 MiB + 3, two segments, 1-byte tail"),
        (3 * MiB + 7, "3 MiB + 7, four segments"),
        (5 * MiB + 3, "5 MiB + 3, six segments (tree padded to 8)"),
    ]:
        add("3-of-10 " + label, SEED_BYTES256, length, CONV_A16, 3, 10)

    # Other convergence secrets.
    add("3-of-10 56 bytes, 32-byte convergence", SEED_BYTES256, 56, CONV_32, 3, 10)
    add("3-of-10 100000 bytes, 32-byte convergence", SEED_HASH, 100000, CONV_32, 3, 10)
    add("3-of-10 1 MiB + 1, 32-byte convergence", SEED_HASH, 1048577, CONV_32, 3, 10)
    add("2-of-3 4096 bytes, sha256('Hello world')[:16] convergence", SEED_PRIME, 4096,
        CONV_HELLO16, 2, 3)
    add("3-of-10 1000 bytes, empty convergence secret", SEED_BYTES256, 1000, CONV_EMPTY, 3, 10)
    add("3-of-10 20 bytes LIT, 32-byte convergence (ignored)", SEED_HASH, 20, CONV_32, 3, 10)

    # (k, n) variety at 4096 and 100000 bytes.
    for (k, n) in [(1, 1), (1, 3), (2, 3), (3, 10), (4, 4), (7, 20), (16, 16),
                   (71, 255), (101, 256), (255, 256)]:
        for length in (4096, 100000):
            add("%d-of-%d %d bytes" % (k, n, length), SEED_BYTES256, length, CONV_A16, k, n)
    add("1-of-256 4096 bytes", SEED_PRIME, 4096, CONV_A16, 1, 256)
    add("256-of-256 4096 bytes", SEED_PRIME, 4096, CONV_A16, 256, 256)

    # Small max_segment_size -> many segments.
    add("3-of-10 100000 bytes, mss 1000 (100 segments)", SEED_PRIME, 100000, CONV_A16, 3, 10, 1000)
    add("3-of-10 3006 bytes, mss 1000 (3 full segments of 1002)", SEED_BYTES256, 3006,
        CONV_A16, 3, 10, 1000)
    add("3-of-10 4000 bytes, mss 500 (8 segments, embedded shares)", SEED_HASH, 4000,
        CONV_32, 3, 10, 500)
    add("7-of-20 20000 bytes, mss 1000 (20 segments)", SEED_HASH, 20000, CONV_32, 7, 20, 1000)
    add("2-of-3 5000 bytes, mss 1024 (5 segments, 8-leaf tree)", SEED_BYTES256, 5000,
        CONV_A16, 2, 3, 1024)
    add("1-of-1 1025 bytes, mss 64 (17 segments, 32-leaf tree)", SEED_BYTES256, 1025,
        CONV_A16, 1, 1, 64)
    add("4-of-4 9000 bytes, mss 4096 (3 segments, short tail)", SEED_PRIME, 9000,
        CONV_A16, 4, 4, 4096)

    # Parameters of cases in the published tahoe-lafs integration vectors
    # (integration/vectors/test_vectors.yaml, mss 131072), so that the caps here
    # can be matched against them.
    add("1-of-1 56 bytes, seed 'a', mss 131072 (published vector #1)", SEED_A, 56,
        CONV_A16, 1, 1, 131072)
    add("3-of-10 1024 bytes, seed 'a', mss 131072", SEED_A, 1024, CONV_A16, 3, 10, 131072)
    add("71-of-255 4096 bytes, seed 'c', mss 131072", SEED_C, 4096, CONV_HELLO16, 71, 255, 131072)
    add("101-of-256 131071 bytes, published seed, mss 131072", SEED_PUB_131071, 131071,
        CONV_A16, 101, 256, 131072)
    add("2-of-3 131073 bytes, published seed, mss 131072 (two segments)", SEED_PUB_131073,
        131073, CONV_HELLO16, 2, 3, 131072)
    return cases


# --- in-memory fakes of the storage edge -----------------------------------
class FakeBucketWriter(object):
    """Stands in for a foolscap RemoteReference to an RIBucketWriter."""

    def __init__(self, shnum, allocated_size):
        self.shnum = shnum
        self.allocated_size = allocated_size
        self.data = bytearray()
        self.closed = False
        self.aborted = False

    def callRemote(self, methname, *args, **kwargs):
        return defer.maybeDeferred(getattr(self, "remote_" + methname), *args, **kwargs)

    def remote_write(self, offset, data):
        assert not self.closed
        assert offset == len(self.data), ("non-contiguous write", offset, len(self.data))
        assert offset + len(data) <= self.allocated_size
        self.data += data

    def remote_close(self):
        assert not self.closed
        assert len(self.data) == self.allocated_size, (len(self.data), self.allocated_size)
        self.closed = True

    def remote_abort(self):
        self.aborted = True


@implementer(IStorageServer)
class FakeStorageServer(object):
    def __init__(self, owner):
        self._owner = owner

    def get_buckets(self, storage_index):
        return defer.succeed({})

    def allocate_buckets(self, storage_index, renew_secret, cancel_secret,
                         sharenums, allocated_size, canary):
        buckets = {}
        for shnum in sharenums:
            bw = FakeBucketWriter(shnum, allocated_size)
            assert shnum not in self._owner.collected
            self._owner.collected[shnum] = bw
            buckets[shnum] = bw
        return defer.succeed((set(), buckets))


@implementer(IServer)
class FakeServer(object):
    def __init__(self, index, owner):
        self._index = index
        digest = hashlib.sha256(b"tessera fake server %d" % index).digest()
        self._serverid = b"v0-fake-%03d" % index
        self._lease_seed = digest[:20]
        self._permutation_seed = digest[20:]
        self._storage_server = FakeStorageServer(owner)

    def get_serverid(self):
        return self._serverid

    def get_name(self):
        return "fake%03d" % self._index

    def get_longname(self):
        return self._serverid.decode("ascii")

    def get_lease_seed(self):
        return self._lease_seed

    def get_permutation_seed(self):
        return self._permutation_seed

    def get_version(self):
        return {
            b"http://allmydata.org/tahoe/protocols/storage/v1": {
                b"maximum-immutable-share-size": 2 ** 64,
            },
            b"application-version": b"tessera-vector-generator",
        }

    def upload_permitted(self):
        return True

    def get_storage_server(self):
        return self._storage_server


class FakeStorageBroker(object):
    def __init__(self, num_servers):
        self.collected = {}  # shnum -> FakeBucketWriter (for the current upload)
        self.servers = [FakeServer(i, self) for i in range(num_servers)]

    def get_servers_for_psi(self, peer_selection_index, for_upload=False):
        return sorted(self.servers,
                      key=lambda s: permute_server_hash(peer_selection_index,
                                                        s.get_permutation_seed()))


class FakeClient(service.MultiService):
    """The bits of allmydata.client._Client that Uploader.upload uses."""

    def __init__(self, k, happy, n, mss, num_servers):
        service.MultiService.__init__(self)
        self._params = {"k": k, "happy": happy, "n": n, "max_segment_size": mss}
        self._storage_broker = FakeStorageBroker(num_servers)
        # Fixed lease secret: influences only lease secrets, never share data.
        self._secret_holder = SecretHolder(b"L" * 32, b"unused-convergence")

    def get_encoding_parameters(self):
        return dict(self._params)

    def get_storage_broker(self):
        return self._storage_broker


# --- driver ----------------------------------------------------------------
@defer.inlineCallbacks
def run_case(c):
    k, n = c["k"], c["n"]
    plaintext = plaintext_for(c["seed"], c["length"])
    assert len(plaintext) == c["length"]
    # min(n, MAX_SERVERS) fake servers, happy = number of servers.  Placement
    # does not influence share data; this only keeps Tahoe's max-flow share
    # placement (quadratic in servers x shares) fast for n = 255/256.
    num_servers = min(n, MAX_SERVERS)
    client = FakeClient(k, num_servers, n, c["mss"], num_servers)
    uploader = upload.Uploader()
    uploader.setServiceParent(client)
    client.startService()
    try:
        results = yield uploader.upload(upload.Data(plaintext, convergence=c["conv"]))
    finally:
        yield client.stopService()
    cap = results.get_uri()
    if isinstance(cap, bytes):
        cap = cap.decode("ascii")
    collected = client.get_storage_broker().collected

    out = {
        "name": c["name"],
        "seed_b64": base64.b64encode(c["seed"]).decode("ascii"),
        "length": c["length"],
        "convergence_b64": base64.b64encode(c["conv"]).decode("ascii"),
        "k": k,
        "n": n,
        "max_segment_size": c["mss"],
        "cap": cap,
    }

    parsed = tahoe_uri.from_string(cap)
    if c["length"] <= upload.Uploader.URI_LIT_SIZE_THRESHOLD:
        assert cap.startswith("URI:LIT:"), cap
        assert isinstance(parsed, tahoe_uri.LiteralFileURI)
        assert parsed.data == plaintext
        assert not collected, "LIT upload must not touch servers"
        out["share_sha256"] = {}
        out["share_size"] = 0
        return out

    assert cap.startswith("URI:CHK:"), cap
    assert isinstance(parsed, tahoe_uri.CHKFileURI)
    assert (parsed.needed_shares, parsed.total_shares, parsed.size) == (k, n, c["length"])
    assert sorted(collected) == list(range(n)), sorted(collected)
    shares = {}
    for shnum in range(n):
        bw = collected[shnum]
        assert bw.closed and not bw.aborted
        shares[shnum] = bytes(bw.data)
    sizes = {len(s) for s in shares.values()}
    assert len(sizes) == 1, sizes
    share_size = sizes.pop()
    out["share_sha256"] = {str(i): hashlib.sha256(shares[i]).hexdigest() for i in range(n)}
    out["share_size"] = share_size
    if share_size * n <= EMBED_LIMIT:
        out["share_data_b64"] = {str(i): base64.b64encode(shares[i]).decode("ascii")
                                 for i in range(n)}
    return out


@defer.inlineCallbacks
def main(reactor, output_path):
    started = time.time()
    results = []
    for c in build_cases():
        t0 = time.time()
        r = yield run_case(c)
        results.append(r)
        sys.stderr.write("%-70s %6.2fs  %s\n" % (c["name"], time.time() - t0, r["cap"][:40]))
    doc = {
        "generator": "tests/vectors/generate.sh",
        "tahoe_version": str(allmydata.__version__),
        "plaintext_rule": PLAINTEXT_RULE,
        "cases": results,
    }
    text = json.dumps(doc, indent=1) + "\n"
    tmp = output_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, output_path)
    sys.stderr.write("wrote %d cases, %d bytes to %s in %.1fs\n"
                     % (len(results), len(text), output_path, time.time() - started))


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "chk_vectors.json")
    task.react(main, [path])
