//! Fixtures shared by the key-value store tests (`store_redis`, `store_memcached`):
//! finding the servers and driving the service scripts. The behaviours every store
//! must show are in the conformance suite (`common/conformance.rs`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vishnu::StoreError;

use crate::common::server_env;

/// How long a call may take while its server is down: the 2 s store timeout
/// plus scheduling slack.
pub const FAIL_WITHIN: Duration = Duration::from_millis(2500);

/// Serializes the tests that stop a server against those that use it: each
/// test holds it for reading, an outage test for writing.
pub static SERVERS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The value of `var`, or `None` (after saying why the test is skipped) when it
/// is unset outside CI. Under CI (`CI=true` or `CI=1`) a missing server is a failure.
pub fn env_or_skip(var: &str, script: &str) -> Option<String> {
    let how = format!(
        "start the servers with `scripts/services/{script} start DIR` and `source DIR/{}.env`",
        script.trim_end_matches(".sh")
    );
    server_env::required_env(var, &how)
}

/// One server stopped (`kill`) or frozen (`pause`) through its service script.
/// [`Outage::end`] brings it back (`restart` / `resume`); if the test fails
/// first, dropping the guard does, so that no server stays down for the tests
/// after it.
pub struct Outage {
    script: PathBuf,
    dir: String,
    name: &'static str,
    undo: &'static str,
    ended: bool,
}

impl Outage {
    /// `kill` or `pause` server `name` of `script` (under `$VISHNU_SERVICES_DIR`).
    /// `None` when the test is skipped (no services dir, outside CI).
    pub async fn begin(script: &str, action: &str, name: &'static str) -> Option<Self> {
        let dir = env_or_skip("VISHNU_SERVICES_DIR", script)?;
        let undo = match action {
            "kill" => "restart",
            "pause" => "resume",
            other => panic!("no outage action {other:?}"),
        };
        let outage = Self {
            script: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../scripts/services")
                .join(script),
            dir,
            name,
            undo,
            ended: false,
        };
        outage.run(action).await;
        Some(outage)
    }

    /// Brings the server back, and waits until it answers.
    pub async fn end(mut self) {
        self.ended = true;
        self.run(self.undo).await;
    }

    async fn run(&self, action: &str) {
        let output = tokio::process::Command::new("bash")
            .arg(&self.script)
            .args([action, self.dir.as_str(), self.name])
            .output()
            .await
            .expect("run the service script");
        assert!(
            output.status.success(),
            "{} {action} {} failed: {}{}",
            self.script.display(),
            self.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.ended {
            let _ = std::process::Command::new("bash")
                .arg(&self.script)
                .args([self.undo, self.dir.as_str(), self.name])
                .status();
        }
    }
}

/// Runs `call` and checks that it fails with a store error within [`FAIL_WITHIN`].
pub async fn fails_fast<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> StoreError {
    let started = Instant::now();
    let result = call.await;
    let took = started.elapsed();
    eprintln!("{what} failed after {took:?}");
    assert!(
        took < FAIL_WITHIN,
        "{what} took {took:?} while the server was down"
    );
    match result {
        Err(e) => e,
        Ok(v) => panic!("{what} succeeded while the server was down: {v:?}"),
    }
}

/// A "server" that accepts connections (the kernel completes the handshake)
/// and never answers: what a hung or overloaded server looks like. Keep the
/// listener alive for as long as the address is used.
pub fn silent_server() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

/// A local address nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
