//! The frontends' shared figures: bytes and operations in and out, failures by kind, open sessions
//! and spool bytes, per frontend (web, SFTP, FTP). The node makes one [`Counters`] and hands it to
//! every frontend it runs; the gateway's `/statistics` renders it (`?t=openmetrics` as the
//! `tessera_frontend_*` families, `?t=json` as `tessera.frontend.*` keys).
//!
//! Each frontend counts where it already is: bytes where file data (or, for the web, an HTTP
//! body) crosses to or from the client, operations where a request is recognised, and failures
//! where the frontend maps an error to its protocol's status ([`ErrorKind::of_node`] is the one
//! classification of grid errors they share). Everything is a relaxed atomic: no lock on the data
//! path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use filenode::node::NodeError;

use crate::spool::SpoolQuota;
use crate::web::Exposition;

/// A frontend, as the `frontend` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    /// The web gateway (Tahoe's web API and the browser UI).
    Web,
    /// The SFTP server.
    Sftp,
    /// The FTP server.
    Ftp,
    /// The WebDAV server.
    Webdav,
}

impl Frontend {
    /// Every frontend, in the order the figures show them.
    pub const ALL: [Frontend; 4] = [Frontend::Web, Frontend::Sftp, Frontend::Ftp, Frontend::Webdav];

    /// The label value: `web`, `sftp`, `ftp`, `webdav`.
    pub fn name(self) -> &'static str {
        match self {
            Frontend::Web => "web",
            Frontend::Sftp => "sftp",
            Frontend::Ftp => "ftp",
            Frontend::Webdav => "webdav",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a client asked a frontend to do (the `op` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A file written (web PUT/POST upload, SFTP open for writing, FTP STOR).
    Upload,
    /// A file read (web GET of a file, SFTP open for reading, FTP RETR).
    Download,
    /// A directory listed.
    List,
    /// Metadata read (web `t=json`/`t=info`, SFTP stat, FTP SIZE/MDTM/MLST).
    Stat,
    /// A directory made.
    Mkdir,
    /// A file or directory unlinked.
    Delete,
    /// A link renamed or moved.
    Rename,
    /// A check, verify or repair (web `t=check` and the deep checks).
    Check,
    /// Anything else (web forms and links, SFTP setstat and extensions, FTP CWD).
    Other,
}

impl Op {
    /// Every operation, in the order the figures show them.
    pub const ALL: [Op; 9] = [
        Op::Upload,
        Op::Download,
        Op::List,
        Op::Stat,
        Op::Mkdir,
        Op::Delete,
        Op::Rename,
        Op::Check,
        Op::Other,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Op::Upload => "upload",
            Op::Download => "download",
            Op::List => "list",
            Op::Stat => "stat",
            Op::Mkdir => "mkdir",
            Op::Delete => "delete",
            Op::Rename => "rename",
            Op::Check => "check",
            Op::Other => "other",
        }
    }
}

/// Why an operation failed (the `kind` label): the same kinds for every frontend, whatever its
/// protocol's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such file or directory.
    NotFound,
    /// A write through a read-only cap, or a refused login-scoped action.
    Permission,
    /// Too few shares could be found or verified to read the object (Tahoe's
    /// `NotEnoughSharesError`; also a corrupt directory).
    NotEnoughShares,
    /// Too few servers to place an upload (Tahoe's `UploadUnhappinessError`).
    NotEnoughServers,
    /// Something took too long.
    Timeout,
    /// The request is wrong: a bad name, cap, argument, or a file where a directory was meant.
    BadRequest,
    /// The name exists already, or the object changed under the request.
    Conflict,
    /// A spool quota or a size bound was passed.
    Quota,
    /// The operation or the object's kind is not supported.
    Unsupported,
    /// The gateway itself failed (a spool file, a task).
    Internal,
}

impl ErrorKind {
    /// Every kind, in the order the figures show them.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::NotFound,
        ErrorKind::Permission,
        ErrorKind::NotEnoughShares,
        ErrorKind::NotEnoughServers,
        ErrorKind::Timeout,
        ErrorKind::BadRequest,
        ErrorKind::Conflict,
        ErrorKind::Quota,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Permission => "permission",
            ErrorKind::NotEnoughShares => "not_enough_shares",
            ErrorKind::NotEnoughServers => "not_enough_servers",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Quota => "quota",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind of a filesystem error, for every frontend.
    pub fn of_node(error: &NodeError) -> ErrorKind {
        match error {
            NodeError::NoSuchChild(_) | NodeError::NotADirectory(_) => ErrorKind::NotFound,
            NodeError::NotWritable(_) | NodeError::MarkedReadOnly(_) => ErrorKind::Permission,
            NodeError::Unrecoverable(_) | NodeError::CorruptDirectory(_) => ErrorKind::NotEnoughShares,
            NodeError::NotEnoughServers(_) => ErrorKind::NotEnoughServers,
            NodeError::ExistingChild(_)
            | NodeError::WrongType(_)
            | NodeError::UncoordinatedWrite
            | NodeError::Conflict(_)
            | NodeError::VersionChanged(_) => ErrorKind::Conflict,
            NodeError::BadName { .. }
            | NodeError::BadChild(_)
            | NodeError::Input(_)
            | NodeError::BadOffset(_) => ErrorKind::BadRequest,
            NodeError::Unsupported(_) => ErrorKind::Unsupported,
        }
    }

    /// The kind of a file-system layer's error (`filenode::fs`), beside [`ErrorKind::of_node`].
    /// (FTP and SFTP count a few kinds their own way: a store that finds too few servers, and what
    /// their protocols report as a plain failure.)
    pub fn of_fs(kind: filenode::fs::FsErrorKind) -> ErrorKind {
        use filenode::fs::FsErrorKind;
        match kind {
            FsErrorKind::NotFound => ErrorKind::NotFound,
            FsErrorKind::Exists | FsErrorKind::NotEmpty | FsErrorKind::Conflict => ErrorKind::Conflict,
            FsErrorKind::ReadOnly => ErrorKind::Permission,
            FsErrorKind::NotADirectory
            | FsErrorKind::IsADirectory
            | FsErrorKind::BadPath
            | FsErrorKind::Other => ErrorKind::BadRequest,
            FsErrorKind::Unavailable => ErrorKind::NotEnoughServers,
            FsErrorKind::Gone => ErrorKind::NotEnoughShares,
            FsErrorKind::TooLarge => ErrorKind::Quota,
        }
    }

    /// The kind of a local IO failure (a spool file, a transfer).
    pub fn of_io(error: &std::io::Error) -> ErrorKind {
        match error.kind() {
            std::io::ErrorKind::QuotaExceeded | std::io::ErrorKind::FileTooLarge => ErrorKind::Quota,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Internal,
        }
    }
}

/// One frontend's figures.
#[derive(Debug, Default)]
pub struct FrontendCounters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    operations: [AtomicU64; Op::ALL.len()],
    errors: [AtomicU64; ErrorKind::ALL.len()],
    sessions: AtomicU64,
    login_failures: AtomicU64,
    spool: Mutex<Option<Arc<SpoolQuota>>>,
}

impl FrontendCounters {
    /// Counts `bytes` received from a client.
    pub fn bytes_in(&self, bytes: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` sent to a client.
    pub fn bytes_out(&self, bytes: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts an operation asked for.
    pub fn operation(&self, op: Op) {
        self.operations[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed operation.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed login (wrong or missing credentials, or a source refused for failing too
    /// often).
    pub fn login_failed(&self) {
        self.login_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed logins so far.
    pub fn login_failures(&self) -> u64 {
        self.login_failures.load(Ordering::Relaxed)
    }

    /// Counts a session as open until the guard is dropped.
    pub fn session(self: &Arc<Self>) -> SessionGuard {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        SessionGuard {
            counters: Arc::clone(self),
        }
    }

    /// Makes `quota` the spool this frontend's spool figure reads.
    pub fn set_spool(&self, quota: &Arc<SpoolQuota>) {
        *self.spool.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(quota));
    }

    /// Bytes received so far.
    pub fn total_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes sent so far.
    pub fn total_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// Operations of kind `op` asked for so far.
    pub fn operations(&self, op: Op) -> u64 {
        self.operations[op as usize].load(Ordering::Relaxed)
    }

    /// Failures of kind `kind` so far.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Bytes this frontend's uploads in progress hold in its spool now.
    pub fn spool_bytes(&self) -> u64 {
        self.spool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |quota| quota.total())
    }
}

/// An open session: the frontend's session figure counts it until this is dropped.
#[derive(Debug)]
pub struct SessionGuard {
    counters: Arc<FrontendCounters>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.counters.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every frontend's figures (one per node, shared by its frontends).
#[derive(Debug)]
pub struct Counters {
    frontends: [Arc<FrontendCounters>; Frontend::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            frontends: std::array::from_fn(|_| Arc::default()),
        }
    }
}

impl Counters {
    /// A new set, every figure zero.
    pub fn new() -> Arc<Counters> {
        Arc::default()
    }

    /// One frontend's figures.
    pub fn frontend(&self, frontend: Frontend) -> &Arc<FrontendCounters> {
        &self.frontends[frontend.index()]
    }

    /// The `tessera_frontend_*` families.
    pub fn write(&self, out: &mut Exposition) {
        let each = |f: &dyn Fn(&FrontendCounters) -> Vec<(String, f64)>| -> Vec<(String, f64)> {
            Frontend::ALL
                .iter()
                .flat_map(|frontend| {
                    let label = format!("frontend=\"{}\"", frontend.name());
                    f(self.frontend(*frontend))
                        .into_iter()
                        .map(move |(labels, value)| {
                            let sep = if labels.is_empty() { "" } else { "," };
                            (format!("{{{label}{sep}{labels}}}"), value)
                        })
                })
                .collect()
        };
        let bytes = each(&|c| {
            vec![
                ("direction=\"in\"".to_owned(), c.total_in() as f64),
                ("direction=\"out\"".to_owned(), c.total_out() as f64),
            ]
        });
        write_counter(
            out,
            "tessera_frontend_bytes",
            "Bytes received from clients (in) and sent to them (out) per frontend: file data for \
             SFTP and FTP, HTTP bodies for the web.",
            &bytes,
        );
        let operations = each(&|c| {
            Op::ALL
                .iter()
                .map(|op| (format!("op=\"{}\"", op.name()), c.operations(*op) as f64))
                .collect()
        });
        write_counter(
            out,
            "tessera_frontend_operations",
            "Operations clients asked of each frontend, by kind.",
            &operations,
        );
        let errors = each(&|c| {
            ErrorKind::ALL
                .iter()
                .map(|kind| (format!("kind=\"{}\"", kind.name()), c.errors(*kind) as f64))
                .collect()
        });
        write_counter(
            out,
            "tessera_frontend_errors",
            "Operations of each frontend that failed, by why.",
            &errors,
        );
        let logins: Vec<(String, f64)> = [Frontend::Sftp, Frontend::Ftp, Frontend::Webdav]
            .iter()
            .map(|f| {
                (
                    format!("{{frontend=\"{}\"}}", f.name()),
                    self.frontend(*f).login_failures() as f64,
                )
            })
            .collect();
        write_counter(
            out,
            "tessera_frontend_login_failures",
            "Failed SFTP, FTP and WebDAV logins (wrong credentials, or a source refused for failing too often).",
            &logins,
        );
        let sessions: Vec<(String, f64)> = [Frontend::Sftp, Frontend::Ftp]
            .iter()
            .map(|f| {
                (
                    format!("{{frontend=\"{}\"}}", f.name()),
                    self.frontend(*f).open_sessions() as f64,
                )
            })
            .collect();
        let sessions: Vec<(&str, f64)> = sessions.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        out.gauge(
            "tessera_frontend_sessions",
            "SFTP sessions and FTP control connections open now.",
            &sessions,
        );
        let spool = each(&|c| vec![(String::new(), c.spool_bytes() as f64)]);
        let spool: Vec<(&str, f64)> = spool.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        out.gauge(
            "tessera_frontend_spool_bytes",
            "Bytes each frontend's uploads in progress hold in its spool files now.",
            &spool,
        );
    }

    /// The figures as `/statistics?t=json` keys: counters (Tahoe's `counters`) and gauges (its
    /// `stats`).
    pub fn json(&self) -> (JsonFigures, JsonFigures) {
        let mut counters = Vec::new();
        let mut gauges = Vec::new();
        for frontend in Frontend::ALL {
            let c = self.frontend(frontend);
            let prefix = format!("tessera.frontend.{}", frontend.name());
            counters.push((format!("{prefix}.bytes_in"), c.total_in()));
            counters.push((format!("{prefix}.bytes_out"), c.total_out()));
            for op in Op::ALL {
                counters.push((format!("{prefix}.operations.{}", op.name()), c.operations(op)));
            }
            for kind in ErrorKind::ALL {
                counters.push((format!("{prefix}.errors.{}", kind.name()), c.errors(kind)));
            }
            if frontend != Frontend::Web {
                counters.push((format!("{prefix}.login_failures"), c.login_failures()));
            }
            if matches!(frontend, Frontend::Sftp | Frontend::Ftp) {
                gauges.push((format!("{prefix}.sessions"), c.open_sessions()));
            }
            gauges.push((format!("{prefix}.spool_bytes"), c.spool_bytes()));
        }
        (counters, gauges)
    }
}

/// Figures by their `/statistics?t=json` key.
pub type JsonFigures = Vec<(String, u64)>;

fn write_counter(out: &mut Exposition, name: &str, help: &str, samples: &[(String, f64)]) {
    let samples: Vec<(&str, f64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    out.counter(name, help, &samples);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::MetricsFormat;

    #[test]
    fn each_figure_reaches_its_series() {
        let counters = Counters::new();
        let sftp = counters.frontend(Frontend::Sftp);
        sftp.bytes_in(1000);
        sftp.bytes_out(7);
        sftp.operation(Op::Upload);
        sftp.operation(Op::Upload);
        sftp.error(ErrorKind::NotFound);
        sftp.login_failed();
        let ftp = counters.frontend(Frontend::Ftp);
        let session = ftp.session();
        let quota = SpoolQuota::new(1 << 20);
        ftp.set_spool(&quota);
        let mut out = Exposition::new(MetricsFormat::OpenMetrics);
        counters.write(&mut out);
        let text = out.finish();
        for line in [
            "tessera_frontend_bytes_total{frontend=\"sftp\",direction=\"in\"} 1000",
            "tessera_frontend_bytes_total{frontend=\"sftp\",direction=\"out\"} 7",
            "tessera_frontend_bytes_total{frontend=\"ftp\",direction=\"in\"} 0",
            "tessera_frontend_operations_total{frontend=\"sftp\",op=\"upload\"} 2",
            "tessera_frontend_operations_total{frontend=\"web\",op=\"upload\"} 0",
            "tessera_frontend_errors_total{frontend=\"sftp\",kind=\"not_found\"} 1",
            "tessera_frontend_errors_total{frontend=\"sftp\",kind=\"internal\"} 0",
            "tessera_frontend_sessions{frontend=\"ftp\"} 1",
            "tessera_frontend_login_failures_total{frontend=\"sftp\"} 1",
            "tessera_frontend_login_failures_total{frontend=\"ftp\"} 0",
            "tessera_frontend_sessions{frontend=\"sftp\"} 0",
            "tessera_frontend_spool_bytes{frontend=\"ftp\"} 0",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing from:\n{text}"
            );
        }
        drop(session);
        assert_eq!(ftp.open_sessions(), 0);
        let (json_counters, gauges) = counters.json();
        assert!(json_counters.contains(&("tessera.frontend.sftp.bytes_in".into(), 1000)));
        assert!(json_counters.contains(&("tessera.frontend.sftp.errors.not_found".into(), 1)));
        assert!(gauges.contains(&("tessera.frontend.ftp.sessions".into(), 0)));
    }

    #[test]
    fn grid_errors_have_one_kind_for_every_frontend() {
        assert_eq!(
            ErrorKind::of_node(&NodeError::NoSuchChild("x".into())),
            ErrorKind::NotFound
        );
        assert_eq!(
            ErrorKind::of_node(&NodeError::NotWritable("read-only")),
            ErrorKind::Permission
        );
        let quota = std::io::Error::new(std::io::ErrorKind::QuotaExceeded, "full");
        assert_eq!(ErrorKind::of_io(&quota), ErrorKind::Quota);
        assert_eq!(
            ErrorKind::of_io(&std::io::Error::other("disk")),
            ErrorKind::Internal
        );
    }
}
