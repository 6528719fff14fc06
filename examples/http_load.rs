//! A fixed-count HTTP/1.1 load generator for profiling `http_bench_server` (for example
//! under callgrind, where a fixed number of requests makes instruction counts comparable;
//! `wrk` runs for a fixed time instead).
//!
//! ```text
//! cargo run --release --example http_load -- --addr 127.0.0.1:PORT --requests N [--connections C]
//! ```
//!
//! Opens `C` keep-alive connections (default 4) and sends `GET /` on them, one request at
//! a time per connection, until `N` responses in total have been read; exits with status 1
//! if any response is not `200`. Standard library only: blocking sockets, one thread per
//! connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn usage() -> ! {
    eprintln!("usage: http_load --addr HOST:PORT --requests N [--connections C]");
    std::process::exit(2)
}

/// Reads one response; returns its status code.
fn read_response(r: &mut BufReader<TcpStream>, line: &mut String) -> std::io::Result<u16> {
    line.clear();
    r.read_line(line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        if r.read_line(line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok(status)
}

fn main() {
    let (mut addr, mut requests, mut connections) = (None, None, 4u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--addr", Some(v)) => addr = Some(v),
            ("--requests", Some(v)) => requests = v.parse().ok(),
            ("--connections", Some(v)) => connections = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let (Some(addr), Some(requests)) = (addr, requests) else {
        usage()
    };
    let left = Arc::new(AtomicU64::new(requests));
    let bad = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (addr, left, bad) = (addr.clone(), Arc::clone(&left), Arc::clone(&bad));
            std::thread::spawn(move || {
                let stream = TcpStream::connect(&addr).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut w = stream.try_clone().expect("clone socket");
                let mut r = BufReader::new(stream);
                let mut line = String::new();
                let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    w.write_all(request.as_bytes()).expect("write");
                    if read_response(&mut r, &mut line).expect("read") != 200 {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("connection thread");
    }
    let bad = bad.load(Ordering::Relaxed);
    println!("{requests} requests, {bad} not 200");
    if bad != 0 {
        std::process::exit(1);
    }
}
