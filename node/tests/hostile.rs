//! Issue 13, finding 3, at the process level: a real `tessera devgrid` gateway is sent what a
//! hostile browser or script could send, and the gateway's own peak memory (VmHWM of its process)
//! stays bounded: a form with eight 15 MiB fields, and a 256 MiB SDMF upload, are refused with 413
//! and a message, and the gateway serves on.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;
use common::free_port;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Devgrid(Child);

impl Drop for Devgrid {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, web_port: u16) -> Devgrid {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["devgrid", "--servers", "3", "--web-port", &web_port.to_string()])
        .args(["--sftp-port", "0", "--ftp-port", "0", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Stopped and waited for when dropped, on every path.
    let grid = Devgrid(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().contains("Press Ctrl-C to stop the grid") {
            return grid;
        }
        assert!(Instant::now() < deadline, "devgrid did not become ready");
    }
    panic!("devgrid exited before it was ready");
}

/// The process running `tessera run DIR`.
fn pid_running(dir: &Path) -> u32 {
    let wanted = dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "run") && args.contains(&wanted) {
            return pid;
        }
    }
    panic!("no process runs {wanted}");
}

/// Peak resident memory of a process, in bytes.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Sends a request head and then `body_len` bytes of `filler` (stopping when the server closes),
/// while reading the answer; returns the answer.
fn send_streamed(port: u16, head: &str, prefix: &[u8], body_len: u64, suffix: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let (head, prefix, suffix) = (head.to_owned(), prefix.to_vec(), suffix.to_vec());
    let sending = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        let mut left = body_len;
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&prefix);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if writer.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
        let _ = writer.write_all(&suffix);
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // The answer's head and body (by its Content-Length); the server may reset the connection
    // after it.
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|length| answer.len() >= end + 4 + length) {
                break;
            }
        }
    }
    drop(stream);
    let _ = sending.join();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn hostile_web_requests_leave_the_gateway_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _grid = start(dir.path(), port);
    let pid = pid_running(&dir.path().join("gateway"));
    let before = vm_hwm(pid);

    // Eight form fields of 15 MiB each (not the file): 413 at the first one's 64 KiB.
    let mut fields = Vec::new();
    for i in 0..8 {
        fields.extend_from_slice(
            format!("--B0\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n").as_bytes(),
        );
        fields.extend(std::iter::repeat_n(b'a', 15 << 20));
        fields.extend_from_slice(b"\r\n");
    }
    fields.extend_from_slice(b"--B0--\r\n");
    let head = format!(
        "POST /uri?t=upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B0\r\n\
         Content-Length: {}\r\n\r\n",
        fields.len()
    );
    let answer = send_streamed(port, &head, &fields, 0, b"");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("form field \"f0\" is longer than"), "{answer}");
    drop(fields);

    // A 256 MiB SDMF upload: 413 once it passes the SDMF bound.
    let len: u64 = 256 << 20;
    let head = format!("PUT /uri?format=SDMF HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
    let answer = send_streamed(port, &head, b"", len, b"");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("SDMF"), "{answer}");

    let after = vm_hwm(pid);
    let grown = after.saturating_sub(before);
    eprintln!(
        "gateway VmHWM: {} MiB before, {} MiB after",
        before >> 20,
        after >> 20
    );
    assert!(
        grown < 48 << 20,
        "the gateway's peak memory grew by {} MiB",
        grown >> 20
    );

    // The gateway serves on.
    let answer = send_streamed(
        port,
        "PUT /uri HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        b"",
        0,
        b"",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("URI:LIT:"), "{answer}");
}
