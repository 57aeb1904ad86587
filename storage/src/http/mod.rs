//! The HTTPS storage protocol of Tahoe-LAFS ("Great Black Swamp", tahoe-interfaces.md §1): CBOR over
//! HTTP/1.1 over TLS, addressed by NURLs and authenticated by a swissnum plus per-operation secrets.
//!
//! - [`client`] (always built): [`HttpStorageClient`], a [`crate::StorageClient`] over HTTPS with
//!   SPKI pinning, connection reuse, timeouts and retries of idempotent requests.
//! - `server` (feature `server`): [`router`] (an axum `Router` over a [`crate::server::StorageServer`])
//!   and [`serve`] (HTTPS on an already-bound listener, graceful shutdown).
//! - `wire` and `cbor` (private): the one encoder and one decoder of every message and header, shared
//!   by both sides.
//!
//! # Status codes
//!
//! | endpoint | success | refusals |
//! |---|---|---|
//! | every endpoint | | 401 missing/wrong `Authorization`; 400 non-UTF-8 `Authorization`; 404 path whose storage index is not 26 base32 characters or whose share number is not a decimal `u16`; 405 wrong method |
//! | endpoints with secrets | | 400 secrets missing, extra, repeated, unknown, not base64, empty, or lease/write-enabler secret not 32 bytes |
//! | endpoints answering CBOR | | 406 `Accept` present but no entry matches `application/cbor` with q > 0 |
//! | endpoints reading CBOR | | 415 `Content-Type` present and not `application/cbor`; 413 body over the cap (allocate 8 KiB, corrupt 32 KiB, read-test-write 2^48, others 1 MiB); 400 malformed CBOR or schema violation |
//! | `GET /storage/v1/version` | 200 | |
//! | `POST /storage/v1/immutable/:si` | 200 `{already-have, allocated}` | |
//! | `PATCH /storage/v1/immutable/:si/:shnum` | 200 (incomplete) / 201 (complete), `{required}` | 416 missing or non-`bytes` `Content-Range`; 400 body length ≠ range length (413 when longer); 404 no such upload; 401 wrong upload secret; 405 share complete; 409 conflicting bytes; 416 write past the allocated size (Tahoe: 500) |
//! | `PUT /storage/v1/immutable/:si/:shnum/abort` | 200 empty | 404 no upload; 401 wrong secret; 405 share complete |
//! | `POST /storage/v1/{immutable,mutable}/:si/:shnum/corrupt` | 200 empty | 404 no such share |
//! | `GET /storage/v1/{immutable,mutable}/:si/shares` | 200 set (empty for an unknown index) | |
//! | `GET /storage/v1/{immutable,mutable}/:si/:shnum` | 200 whole share (no `Range`); 206 + `Content-Range: bytes A-B'/LEN`; 204 when A ≥ LEN | 404 no such share; 416 `Range` not exactly `bytes=A-B` with A ≤ B (every answer here, refusals too, is `application/octet-stream`, as Tahoe's client checks the type before the status) |
//! | `POST /storage/v1/mutable/:si/read-test-write` | 200 `{success, data}` (failed tests are not an error) | 401 write enabler mismatch |
//! | `PUT /storage/v1/lease/:si` | 204 | 404 no shares for the index |
//! | `GET /storage/v1/tessera/status` (Tessera) | 200 CBOR [`StatusReport`] | |
//! | `PUT /storage/v1/tessera/immutable/:si/:shnum` (Tessera), the whole share as the body, with the lease secrets | 201 stored (allocated, written and closed); 200 the same share already held, byte for byte (the lease added) | 413 body over 1 MiB; 400 empty body; 409 a different share of that number held (tag `conflict`) or allocation refused: another client's upload, no room (tag `refused`); 403 read-only server; 404 from servers without the route (Tahoe) |
//! | `PATCH /storage/v1/immutable/:si/:shnum` with `X-Tessera-Allocate: SIZE` and the lease secrets beside the upload secret (Tessera: an allocating write) | as `PATCH`, the upload opened first (an allocation of this share alone, SIZE bytes) unless one is open under this upload secret | 400 SIZE not a decimal `u64`, or the secrets not exactly lease + upload; 405 the share is held (tag `already-complete`); 409 allocation refused: another client's upload, no room (tag `refused`); 403 read-only server; then as `PATCH` |
//! | `POST /storage/v1/tessera/immutable/:si/:shnum/remove-corrupt` (Tessera) | 200 `{removed, detail}`: removed only when the server's own check proves the share corrupt (`server::share_check`), else kept with the reason | 404 no such share (and from Tahoe servers, which lack the route); 403 read-only server |
//!
//! Store errors map to statuses in one exhaustive match (`server::storage_error_status`): `NotFound`
//! 404, `UploadSecretMismatch` 401, `AlreadyComplete` 405, `Conflict` 409, `BeyondAllocation` 416,
//! `WriteEnablerMismatch` 401, `ReadOnly` 403, `NoSpace` 507, `BadRequest` 400, `Unauthorized` 401,
//! `Internal` 500 (body "internal server error": details are logged, never sent). Error bodies are
//! `text/plain` (share reads excepted, above). An error answer to a request with a body carries
//! `Connection: close`: the refusal may come before the body was read, and a client must not reuse
//! the connection (Tahoe's client, on Twisted, loses its next POST or PATCH otherwise).
//!
//! # The `X-Tessera-Error` header (a Tessera extension)
//!
//! Several store errors share a status in Tahoe's protocol (401 means a wrong swissnum, a wrong upload
//! secret or a wrong write enabler). So that a Tessera client can rebuild the exact
//! [`crate::StorageError`] — and the conformance suite can demand identical errors from the in-process
//! and HTTPS clients — error responses produced from a store error also carry
//! `X-Tessera-Error: <kind>[ <field>=<u64>]*`, e.g. `beyond-allocation end=10 allocated=8`. Tahoe clients
//! ignore it; against a server without it, the client falls back to status code plus request context.

pub(crate) mod cbor;
pub mod client;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
pub mod server;
pub(crate) mod wire;

pub use client::{HttpClientOptions, HttpStorageClient};
#[cfg(feature = "server")]
pub use serve::serve;
#[cfg(feature = "server")]
pub use server::{HttpLimits, router, router_with_limits};
pub use wire::{AdvisoryReport, ExpirationSummary, StatusReport};
