//! A throwaway `redis-server` child process for integration tests.
//!
//! Include it with `#[path = "support/redis_server.rs"] mod redis_server;`.
//! It talks RESP by hand over a blocking `std::net::TcpStream`, so it does not
//! depend on the `redis` crate. All methods block (for at most a few seconds);
//! calling them from a `#[tokio::test]` is fine.
//!
//! Tests that need Redis fail loudly when `redis-server` is missing: they never
//! skip.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How often to poll for PING while the server starts.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How long to wait for the server to answer PING.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect, read and write timeout of [`RedisServer::command`].
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How many fresh ports [`RedisServer::start`] tries before giving up.
const START_ATTEMPTS: usize = 5;

const INSTALL_HINT: &str = "install it (Debian/Ubuntu: `apt-get install -y redis-server`) \
     so that `redis-server` is on PATH; tests that need Redis never skip";

/// Ports handed out to servers of this test binary that are still alive (or
/// killed and awaiting a restart), so parallel tests never pick each other's.
static RESERVED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A `redis-server` child process listening on `127.0.0.1:port`, with no
/// persistence. Killed and cleaned up on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` from PATH on a free loopback port and waits until
    /// it answers PING.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on PATH, or it does not answer PING within
    /// 5 seconds.
    pub fn start() -> RedisServer {
        let binary = find_redis_server();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = reserve_free_port();
            let dir = std::env::temp_dir().join(format!(
                "tower-throttle-redis-{}-{port}",
                std::process::id()
            ));
            // A leftover from an earlier, crashed run with the same pid and port.
            let _ = fs::remove_dir_all(&dir);
            if let Err(e) = fs::create_dir_all(&dir) {
                release_port(port);
                panic!("cannot create Redis temp dir {}: {e}", dir.display());
            }
            let mut server = RedisServer {
                child: None,
                port,
                dir,
                binary: binary.clone(),
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                // Dropping `server` kills the child, removes the dir and
                // releases the port; then try another port.
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Does nothing when
    /// it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only when the child has already exited; `wait` reaps it.
            let _ = child.kill();
            if let Err(e) = child.wait() {
                panic!(
                    "waiting for killed redis-server (port {}) failed: {e}",
                    self.port
                );
            }
        }
    }

    /// Starts the server again on the same port (killing it first if it is
    /// still running) and waits until it answers PING. The data set and the
    /// command statistics start empty.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn_and_wait() {
            self.kill();
            panic!("restarting redis-server failed: {e}");
        }
    }

    /// Sends one command (a RESP array of bulk strings) on a new connection
    /// and returns the raw RESP reply, e.g. `"+PONG\r\n"`, `":1\r\n"`,
    /// `"$1\r\n1\r\n"` or `"-ERR ...\r\n"`.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or does not reply within 2 seconds.
    pub fn command(&self, args: &[&str]) -> String {
        match send_command(self.port, args) {
            Ok(reply) => reply,
            Err(e) => panic!(
                "Redis command {args:?} on port {} failed: {e}{}",
                self.port,
                self.log_tail()
            ),
        }
    }

    /// How often `command` (case-insensitive, e.g. `"evalsha"`) was called
    /// since the server (re)started, from `INFO commandstats`; 0 when absent.
    pub fn calls(&self, command: &str) -> u64 {
        let reply = self.command(&["INFO", "commandstats"]);
        parse_calls(&reply, command)
    }

    /// Spawns the child on `self.port` and waits for PING. On error the child
    /// may still be running; the caller kills it (or drops `self`).
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone handle of {}: {e}", log_path.display()))?;
        let child = Command::new(&self.binary)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!(
                    "redis-server ({}) not found: {e}; {INSTALL_HINT}",
                    self.binary.display()
                )
            }
            Err(e) => panic!("cannot run {}: {e}", self.binary.display()),
        };
        let pid = child.id();
        self.child = Some(child);
        self.wait_for_ping(pid)
    }

    /// Polls PING every 10 ms until our child answers, it exits, or 5 s pass.
    fn wait_for_ping(&mut self, pid: u32) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        self.child = None;
                        return Err(format!(
                            "redis-server on port {} exited early with {status}{}",
                            self.port,
                            self.log_tail()
                        ));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("cannot poll redis-server: {e}")),
                }
            }
            if let Ok(reply) = send_command(self.port, &["PING"]) {
                if reply == "+PONG\r\n" {
                    // Make sure the server answering is ours and not another
                    // process that grabbed the port.
                    let info = send_command(self.port, &["INFO", "server"])
                        .map_err(|e| format!("INFO server on port {}: {e}", self.port))?;
                    let answering = info_field(&info, "process_id");
                    if answering.as_deref() == Some(pid.to_string().as_str()) {
                        return Ok(());
                    }
                    return Err(format!(
                        "port {} is answered by another process (process_id {answering:?}, \
                         expected {pid})",
                        self.port
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {} did not answer PING within {STARTUP_TIMEOUT:?}{}",
                    self.port,
                    self.log_tail()
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis-server.log")
    }

    /// The end of the server's log, for panic messages.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if File::open(self.log_path())
            .and_then(|mut f| f.read_to_string(&mut text))
            .is_err()
        {
            return String::new();
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        if tail.is_empty() {
            String::new()
        } else {
            format!("\n--- redis-server log (last lines) ---\n{tail}")
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
        release_port(self.port);
    }
}

/// The absolute path of `redis-server` on PATH.
fn find_redis_server() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| panic!("`redis-server` is not on PATH; {INSTALL_HINT}"))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// A loopback port the OS reports free and no live server of this binary uses.
fn reserve_free_port() -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind a TCP listener on 127.0.0.1:0 to find a free port");
        let port = listener
            .local_addr()
            .expect("cannot read the local address of a TCP listener")
            .port();
        drop(listener);
        let mut reserved = RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if reserved.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port for redis-server");
}

fn release_port(port: u16) {
    let mut reserved = RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = reserved.as_mut() {
        set.remove(&port);
    }
}

/// Sends one RESP command on a fresh connection and reads one full reply.
fn send_command(port: u16, args: &[&str]) -> Result<String, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, COMMAND_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(COMMAND_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(COMMAND_TIMEOUT)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    stream
        .write_all(&request)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("send: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut reply = Vec::new();
    read_reply(&mut reader, &mut reply)?;
    String::from_utf8(reply).map_err(|e| format!("reply is not UTF-8: {e}"))
}

/// Reads one complete RESP2 value, appending its raw bytes to `out`.
fn read_reply(reader: &mut impl BufRead, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    let n = reader
        .read_until(b'\n', out)
        .map_err(|e| format!("read reply: {e}"))?;
    if n == 0 || !out.ends_with(b"\r\n") {
        return Err(format!(
            "connection closed mid-reply after {:?}",
            String::from_utf8_lossy(out)
        ));
    }
    let line = String::from_utf8_lossy(&out[start..out.len() - 2]).into_owned();
    let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
    match kind {
        "+" | "-" | ":" => Ok(()),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|e| format!("bad bulk length {rest:?}: {e}"))?;
            if len < 0 {
                return Ok(());
            }
            let len = usize::try_from(len).map_err(|e| format!("bulk length {len}: {e}"))?;
            let mut body = vec![0; len + 2];
            reader
                .read_exact(&mut body)
                .map_err(|e| format!("read bulk string of {len} bytes: {e}"))?;
            out.extend_from_slice(&body);
            Ok(())
        }
        "*" => {
            let count: i64 = rest
                .parse()
                .map_err(|e| format!("bad array length {rest:?}: {e}"))?;
            for _ in 0..count.max(0) {
                read_reply(reader, out)?;
            }
            Ok(())
        }
        _ => Err(format!("unexpected RESP reply line {line:?}")),
    }
}

/// The value of `field:value` in an INFO reply.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        line.trim_end()
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::to_owned)
    })
}

/// `calls=N` of `cmdstat_<command>` in an `INFO commandstats` reply.
fn parse_calls(info: &str, command: &str) -> u64 {
    let key = format!("cmdstat_{}", command.to_ascii_lowercase());
    let Some(stats) = info_field(info, &key) else {
        return 0;
    };
    stats
        .split(',')
        .find_map(|kv| kv.strip_prefix("calls="))
        .map(|n| {
            n.parse()
                .unwrap_or_else(|e| panic!("bad calls count in {key}:{stats}: {e}"))
        })
        .unwrap_or(0)
}
