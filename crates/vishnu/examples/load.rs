//! A bounded load generator for the vishnu demo, with per-session accounting
//! (used by `tests/e2e/load.py`).
//!
//! ```text
//! cargo run --example load -- --url http://127.0.0.1:3000 [--connections 256] [--sessions 64] [--duration 12]
//! ```
//!
//! It logs in `--sessions` sessions (`POST /login`), spreads `--connections`
//! keep-alive HTTP/1.1 connections over them (connection `i` uses session
//! `i % sessions`) and, for `--duration` seconds, sends a mix of reads
//! (`GET /whoami`, `GET /`, a quarter each) and writes (`GET /counter`, half).
//! Then it checks:
//!
//! - every answer was 2xx (no transport errors either);
//! - `/whoami` and `/` always named the session's own user;
//! - per session, the values `/counter` returned were exactly 1, 2, …, n (each
//!   increment seen once: none lost, none doubled), and a last `GET /counter`
//!   answers n + 1.
//!
//! It prints requests/s and latency percentiles (informational), a last line
//! `load-result {json}`, and exits 1 when a check failed. Loopback targets only.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    addr: SocketAddr,
    host: String,
    connections: usize,
    sessions: usize,
    duration: Duration,
}

const USAGE: &str =
    "usage: load --url http://127.0.0.1:PORT [--connections 256] [--sessions 64] [--duration 12]";

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut connections = 256usize;
    let mut sessions = 64usize;
    let mut duration = 12u64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{name}: {v:?} is not a positive number"))
        };
        match flag.as_str() {
            "--url" => url = Some(value("--url")?),
            "--connections" => {
                connections = number("--connections", value("--connections")?)? as usize
            }
            "--sessions" => sessions = number("--sessions", value("--sessions")?)? as usize,
            "--duration" => duration = number("--duration", value("--duration")?)?,
            "-h" | "--help" => {
                println!(
                    "{USAGE}\n\nSee the top of crates/vishnu/examples/load.rs for what it checks."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let host = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?
        .trim_end_matches('/')
        .to_owned();
    if host.contains('/') {
        return Err("--url takes no path".into());
    }
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("--url: cannot resolve {host}: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or(format!("--url: {host} has no IPv4 address"))?;
    let loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !loopback {
        return Err(format!(
            "--url: {addr} is not a loopback address (load is only sent to this machine)"
        ));
    }
    if duration > 60 {
        return Err("--duration: at most 60 seconds".into());
    }
    if sessions > connections {
        return Err("--sessions: at most --connections".into());
    }
    Ok(Args {
        addr,
        host,
        connections,
        sessions,
        duration: Duration::from_secs(duration),
    })
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).ok();
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

struct Answer {
    status: StatusCode,
    set_cookie: Option<String>,
    body: Bytes,
}

async fn send(
    sender: &mut Sender,
    host: &str,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<String>,
) -> Result<Answer, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let body = match form {
        Some(f) => {
            req = req.header("content-type", "application/x-www-form-urlencoded");
            Full::new(Bytes::from(f))
        }
        None => Full::new(Bytes::new()),
    };
    let req = req.body(body).map_err(|e| e.to_string())?;
    let exchange = async {
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = res.status();
        let set_cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            set_cookie,
            body,
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

struct Session {
    user: String,
    cookie: String,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    requests: u64,
    ok: u64,
    non_2xx: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    wrong_user: u64,
    new_cookie: u64,
    counter_values: Vec<u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.requests += other.requests;
        self.ok += other.ok;
        for (k, v) in other.non_2xx {
            *self.non_2xx.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.wrong_user += other.wrong_user;
        self.new_cookie += other.new_cookie;
    }
}

async fn worker(
    index: usize,
    args: Arc<Args>,
    session: Arc<Session>,
    deadline: Instant,
) -> (usize, Tally) {
    let mut tally = Tally::default();
    let mut rng =
        (0x9E37_79B9_7F4A_7C15u64 ^ (index as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)) | 1;
    let mut sender: Option<Sender> = None;
    let user_marker = format!(">{}<", session.user);
    while Instant::now() < deadline {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(args.addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    *tally.errors.entry(e).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let path = match rng % 4 {
            0 => "/whoami",
            1 => "/",
            _ => "/counter",
        };
        let start = Instant::now();
        let answer = send(
            s,
            &args.host,
            Method::GET,
            path,
            Some(&session.cookie),
            None,
        )
        .await;
        let took = start.elapsed();
        tally.requests += 1;
        tally
            .latencies_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                *tally.errors.entry(format!("{path}: {e}")).or_default() += 1;
                sender = None;
                continue;
            }
        };
        if answer.set_cookie.is_some() {
            tally.new_cookie += 1;
        }
        if !answer.status.is_success() {
            *tally
                .non_2xx
                .entry(format!("{path} {}", answer.status.as_u16()))
                .or_default() += 1;
            continue;
        }
        tally.ok += 1;
        let body = String::from_utf8_lossy(&answer.body);
        match path {
            "/whoami" if body.trim() != session.user => tally.wrong_user += 1,
            "/" if !body.contains(&user_marker) => tally.wrong_user += 1,
            "/counter" => match body.trim().parse::<u64>() {
                Ok(n) => tally.counter_values.push(n),
                Err(_) => {
                    *tally
                        .errors
                        .entry(format!("/counter answered {body:?}"))
                        .or_default() += 1
                }
            },
            _ => {}
        }
    }
    (index, tally)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("load: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    println!(
        "load: {} connections over {} sessions for {} s against http://{}",
        args.connections,
        args.sessions,
        args.duration.as_secs(),
        args.host
    );

    // Log in the sessions, one connection, one after the other.
    let mut setup = match connect(args.addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(1);
        }
    };
    let mut sessions = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        let user = format!("load-{i}");
        let answer = send(
            &mut setup,
            &args.host,
            Method::POST,
            "/login",
            None,
            Some(format!("user={user}")),
        )
        .await;
        let cookie = match answer {
            Ok(a) if a.status == StatusCode::SEE_OTHER && a.set_cookie.is_some() => a
                .set_cookie
                .unwrap()
                .split(';')
                .next()
                .unwrap_or_default()
                .to_owned(),
            Ok(a) => {
                eprintln!(
                    "load: POST /login answered {} (set-cookie: {:?})",
                    a.status, a.set_cookie
                );
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("load: POST /login: {e}");
                std::process::exit(1);
            }
        };
        sessions.push(Arc::new(Session { user, cookie }));
    }

    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let session = sessions[i % args.sessions].clone();
        tasks.push(tokio::spawn(worker(i, args.clone(), session, deadline)));
    }
    let mut total = Tally::default();
    let mut per_session: Vec<Vec<u64>> = vec![Vec::new(); args.sessions];
    for task in tasks {
        let (index, mut tally) = task.await.expect("a worker panicked");
        per_session[index % args.sessions].append(&mut tally.counter_values);
        total.merge(tally);
    }
    let elapsed = started.elapsed();

    // Per-session accounting: the answers were 1..=n, and the next one is n + 1.
    let mut setup = match connect(args.addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(1);
        }
    };
    let mut sessions_ok = 0usize;
    let mut bad_sessions = Vec::new();
    let mut increments = 0u64;
    for (i, values) in per_session.iter_mut().enumerate() {
        values.sort_unstable();
        let n = values.len() as u64;
        increments += n;
        let exact = values.iter().enumerate().all(|(k, v)| *v == k as u64 + 1);
        let last = send(
            &mut setup,
            &args.host,
            Method::GET,
            "/counter",
            Some(&sessions[i].cookie),
            None,
        )
        .await;
        let final_value = match &last {
            Ok(a) if a.status.is_success() => {
                String::from_utf8_lossy(&a.body).trim().parse::<u64>().ok()
            }
            _ => None,
        };
        if exact && final_value == Some(n + 1) {
            sessions_ok += 1;
        } else if bad_sessions.len() < 5 {
            bad_sessions.push(format!(
                "{}: {} increments answered 2xx, answers 1..n exact: {exact}, final /counter: {:?}",
                sessions[i].user,
                n,
                last.map(|a| (
                    a.status.as_u16(),
                    String::from_utf8_lossy(&a.body).into_owned()
                ))
            ));
        }
    }

    total.latencies_us.sort_unstable();
    let rps = total.requests as f64 / elapsed.as_secs_f64();
    let p50 = percentile(&total.latencies_us, 50.0);
    let p99 = percentile(&total.latencies_us, 99.0);
    let max = percentile(&total.latencies_us, 100.0);
    let non_2xx: u64 = total.non_2xx.values().sum();
    let errors: u64 = total.errors.values().sum();
    println!(
        "load: {} requests in {:.1} s = {rps:.0} req/s; latency p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        total.requests,
        elapsed.as_secs_f64()
    );
    println!(
        "load: 2xx {}, non-2xx {non_2xx} {:?}, transport errors {errors} {:?}",
        total.ok, total.non_2xx, total.errors
    );
    println!(
        "load: {increments} counter increments; sessions whose answers were exactly 1..n and whose final /counter is n+1: {sessions_ok}/{}; answers naming another user: {}; responses with Set-Cookie: {}",
        args.sessions, total.wrong_user, total.new_cookie
    );
    for b in &bad_sessions {
        println!("load: BAD SESSION {b}");
    }
    let passed =
        non_2xx == 0 && errors == 0 && total.wrong_user == 0 && sessions_ok == args.sessions;
    let result = serde_json::json!({
        "connections": args.connections,
        "sessions": args.sessions,
        "seconds": elapsed.as_secs_f64(),
        "requests": total.requests,
        "ok": total.ok,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
        "non_2xx": non_2xx,
        "errors": errors,
        "wrong_user": total.wrong_user,
        "increments": increments,
        "sessions_ok": sessions_ok,
        "passed": passed,
    });
    println!("load-result {result}");
    std::process::exit(if passed { 0 } else { 1 });
}
