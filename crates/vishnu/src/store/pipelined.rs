//! The connection [`RedisStore`](super::redis::RedisStore) keeps to one
//! standalone Redis server: one TCP connection that every request of every
//! clone of the store shares, pipelined.
//!
//! A request appends its command to the bytes waiting to be written and takes
//! its place in the queue of replies. One driver task writes what has
//! gathered and reads the replies, handing each, in order (Redis answers in
//! order), to the request at the front of the queue. A request that brings
//! the waiting bytes to 2 KiB while the driver is not writing writes them
//! itself, at once: Redis then works on that batch while the application
//! prepares the next, rather than waiting for one large batch.
//!
//! redis-rs's `ConnectionManager` does the same through a general-purpose
//! pipeline (a channel message per request, a combinator parser, batches cut
//! at 8 KiB); this one does only what the store needs, with less work per
//! request (BENCHMARKS.md has the measurements). The reply parser reads the
//! RESP2 replies a standalone server sends; error replies go to redis-rs's
//! own parser, so that they carry its error kinds (`NOSCRIPT`, `WRONGTYPE`).
//!
//! - A request whose future is dropped keeps its place in the queue: its
//!   reply is read and thrown away, never handed to the next one.
//! - A request may carry a deadline (the store's calls do). The driver
//!   enforces it with one timer for the whole connection, armed at the
//!   earliest deadline in the queue, rather than a timer per request: a
//!   request still waiting at its deadline fails as timed out, and keeps its
//!   place as a dropped one does. A request made on another runtime than the
//!   driver's (which may not be running at all) keeps a timer of its own.
//! - When the connection breaks, every request in the queue fails: it may or
//!   may not have been applied, so it is not sent again. The next request
//!   connects anew. Requests that arrive while an attempt to connect is under
//!   way wait for it and share its outcome; a failed attempt fails them at
//!   once, and the request after them starts a new attempt.
//! - A reply that is not valid RESP2, or one that no request is waiting
//!   for, breaks the connection rather than risk handing a request another's
//!   reply.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// The longest bulk reply accepted (Redis's own limit for a string).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// The most elements an array reply may declare.
const MAX_ARRAY: usize = 1 << 20;
/// How deeply arrays may nest.
const MAX_DEPTH: usize = 8;
/// A request that brings the queued bytes to this many writes them itself.
const FLUSH_AT: usize = 2 * 1024;
/// The most requests that may wait for replies on one connection. A server
/// that falls this far behind has its connection replaced.
#[cfg(not(test))]
const MAX_WAITING: usize = 100_000;
#[cfg(test)]
const MAX_WAITING: usize = 64;
/// How many times one poll of the driver may write and read before it yields.
const DRIVER_ROUNDS: usize = 32;
/// The driver's free space before each read.
const READ_CHUNK: usize = 16 * 1024;
/// A buffer grown past this by one large command or reply is given back.
const KEEP_BUFFER: usize = 1 << 20;

/// Where and how to connect: a TCP server, and the handshake it needs.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

/// A handle on the shared connection; clones share it.
#[derive(Clone)]
pub(crate) struct Pipelined {
    shared: Arc<Shared>,
}

struct Shared {
    target: Target,
    connect_timeout: Duration,
    /// The current connection, if one was made (it may have broken since).
    wire: Mutex<Option<Arc<Wire>>>,
    /// Held by the request that is connecting; the others wait for it.
    connecting: tokio::sync::Mutex<()>,
    /// How many attempts to connect have ended, and how the last one failed.
    attempts: Mutex<(u64, Option<Failure>)>,
}

impl Drop for Shared {
    /// The last handle is gone: close the connection (its tasks hold the
    /// wire, not the handle, and would otherwise keep it open).
    fn drop(&mut self) {
        if let Some(wire) = lock(&self.wire).take() {
            wire.break_with(io::ErrorKind::NotConnected);
        }
    }
}

/// Why an attempt to connect failed, kept to fail the requests that waited for it.
#[derive(Clone)]
enum Failure {
    Io(io::ErrorKind, String),
    Server(String),
}

impl Failure {
    fn of(e: &RedisError) -> Self {
        if e.kind() != ErrorKind::IoError {
            return Failure::Server(e.to_string());
        }
        // `RedisError` keeps its I/O error private; its kind is what the
        // store's retry and error mapping read back.
        let kind = if e.is_connection_refusal() {
            io::ErrorKind::ConnectionRefused
        } else if e.is_timeout() {
            io::ErrorKind::TimedOut
        } else if e.is_connection_dropped() {
            io::ErrorKind::ConnectionReset
        } else {
            io::ErrorKind::Other
        };
        Failure::Io(kind, e.to_string())
    }

    fn error(&self) -> RedisError {
        match self {
            Failure::Io(kind, why) => io::Error::new(*kind, why.clone()).into(),
            Failure::Server(why) => (
                ErrorKind::ResponseError,
                "connecting to Redis failed",
                why.clone(),
            )
                .into(),
        }
    }
}

/// One TCP connection: what waits to be written, and who waits for replies.
struct Wire {
    queue: Mutex<Queue>,
    /// False once broken: a cheap check before taking the queue's lock.
    open: AtomicBool,
    /// The driver's task, stopped when the wire breaks.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The runtime the driver runs on.
    runtime: Option<tokio::runtime::Id>,
}

struct Queue {
    /// Commands not yet handed to the writer.
    out: Vec<u8>,
    /// One entry per request sent, in the order its replies will arrive.
    waiting: VecDeque<Waiting>,
    /// Set when the wire broke: why.
    broken: Option<io::ErrorKind>,
    /// The driver holds bytes not yet all written: nobody else may write.
    writing: bool,
    /// The socket, shared with the driver: a request that fills a batch
    /// writes it itself. Dropped when the wire breaks, so that the socket
    /// closes as soon as the driver is gone too.
    stream: Option<Arc<tokio::net::TcpStream>>,
    /// The driver, waiting for something to write.
    waker: Option<Waker>,
    /// The earliest deadline of a request in `waiting`, or earlier (it is
    /// not updated as replies arrive: the driver's timer firing at a
    /// deadline already met only makes it look again). `None`: no request
    /// has one.
    earliest: Option<Instant>,
    /// The driver, for a request whose deadline is earlier than its timer.
    timer_waker: Option<Waker>,
}

/// A request in the queue: who takes its replies, and until when.
struct Waiting {
    waiter: Waiter,
    deadline: Option<Instant>,
}

/// A request waiting for its reply (or, for a pipeline, its replies).
enum Waiter {
    One(oneshot::Sender<Result<Value, RedisError>>),
    Many {
        tx: oneshot::Sender<Result<Vec<Value>, RedisError>>,
        /// Replies still to be skipped (a transaction's `OK` and `QUEUED`s).
        skip: usize,
        /// How many replies the caller wants after those.
        take: usize,
        got: Vec<Value>,
    },
    /// A request that timed out: this many replies of its own are still to
    /// come, to be read and thrown away.
    Expired(usize),
}

impl Waiter {
    fn fail(self, e: RedisError) {
        // A receiver that is gone (a dropped request) needs no answer.
        match self {
            Waiter::One(tx) => drop(tx.send(Err(e))),
            Waiter::Many { tx, .. } => drop(tx.send(Err(e))),
            Waiter::Expired(_) => {}
        }
    }

    /// How many replies this request still has to receive.
    fn replies_left(&self) -> usize {
        match self {
            Waiter::One(_) => 1,
            Waiter::Many {
                skip, take, got, ..
            } => skip + take.saturating_sub(got.len()),
            Waiter::Expired(left) => *left,
        }
    }
}

/// The wire broke before the request could be queued: nothing was sent.
struct NotSent;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is short and cannot panic halfway.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn broken(kind: io::ErrorKind) -> RedisError {
    io::Error::new(kind, "the connection to Redis broke").into()
}

/// A request still unanswered at its deadline.
fn timed_out() -> RedisError {
    io::Error::new(io::ErrorKind::TimedOut, "Redis did not answer in time").into()
}

fn protocol(why: String) -> RedisError {
    (ErrorKind::ParseError, "invalid reply from Redis", why).into()
}

impl Wire {
    fn new(stream: Arc<tokio::net::TcpStream>) -> Self {
        Self {
            queue: Mutex::new(Queue {
                out: Vec::new(),
                waiting: VecDeque::new(),
                broken: None,
                writing: false,
                stream: Some(stream),
                waker: None,
                earliest: None,
                timer_waker: None,
            }),
            open: AtomicBool::new(true),
            tasks: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::try_current().ok().map(|h| h.id()),
        }
    }

    /// Queues a request: `write` appends its bytes, `waiter` takes its
    /// replies, unless `deadline` passes first.
    fn send(
        &self,
        write: impl FnOnce(&mut Vec<u8>),
        waiter: Waiter,
        deadline: Option<Instant>,
    ) -> Result<(), NotSent> {
        let mut queue = lock(&self.queue);
        if queue.broken.is_some() {
            return Err(NotSent);
        }
        if queue.waiting.len() >= MAX_WAITING {
            // A server this far behind (or hung) would otherwise let the
            // queue and its bytes grow without end: the connection is
            // given up, its requests fail as timed out, and this one
            // waits for a new connection.
            drop(queue);
            tracing::warn!(
                waiting = MAX_WAITING,
                "Redis is not answering: reconnecting"
            );
            self.break_with(io::ErrorKind::TimedOut);
            return Err(NotSent);
        }
        // A non-empty buffer already has the driver's attention.
        let mut driver = if queue.out.is_empty() {
            queue.waker.take()
        } else {
            None
        };
        write(&mut queue.out);
        queue.waiting.push_back(Waiting { waiter, deadline });
        // The driver's timer must cover this deadline: wake it to move the
        // timer if it is set later, or not set at all.
        let timer = match (deadline, queue.earliest) {
            (Some(at), Some(earliest)) if at >= earliest => None,
            (Some(at), _) => {
                queue.earliest = Some(at);
                queue.timer_waker.take()
            }
            (None, _) => None,
        };
        if queue.out.len() >= FLUSH_AT && !queue.writing {
            // A full batch goes out now, rather than when the driver next
            // runs: Redis starts on it while later requests are still
            // being prepared.
            let written = match &queue.stream {
                Some(stream) => stream.try_write(&queue.out).unwrap_or(0),
                None => 0,
            };
            queue.out.drain(..written);
            if !queue.out.is_empty() && driver.is_none() {
                driver = queue.waker.take();
            }
        }
        drop(queue);
        if let Some(driver) = driver {
            driver.wake();
        }
        if let Some(timer) = timer {
            timer.wake();
        }
        Ok(())
    }

    /// Whether the caller runs on the driver's runtime: only then can it
    /// count on the driver to enforce its deadline.
    fn driven_here(&self) -> bool {
        self.runtime.is_some()
            && tokio::runtime::Handle::try_current().ok().map(|h| h.id()) == self.runtime
    }

    /// Fails every request whose deadline is `now` or earlier; each keeps
    /// its place, to throw its replies away. Sets `earliest` to the earliest
    /// deadline left.
    fn expire(&self, now: Instant) {
        let mut expired = Vec::new();
        {
            let mut queue = lock(&self.queue);
            let mut earliest: Option<Instant> = None;
            for waiting in &mut queue.waiting {
                let Some(deadline) = waiting.deadline else {
                    continue;
                };
                if deadline <= now {
                    let left = Waiter::Expired(waiting.waiter.replies_left());
                    expired.push(std::mem::replace(&mut waiting.waiter, left));
                    waiting.deadline = None;
                } else {
                    earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
                }
            }
            queue.earliest = earliest;
        }
        for waiter in expired {
            waiter.fail(timed_out());
        }
    }

    /// Marks the wire broken, fails every waiting request and stops the tasks.
    fn break_with(&self, kind: io::ErrorKind) {
        let waiting = {
            let mut queue = lock(&self.queue);
            if queue.broken.is_some() {
                return;
            }
            queue.broken = Some(kind);
            queue.out = Vec::new();
            queue.waker = None;
            queue.stream = None;
            std::mem::take(&mut queue.waiting)
        };
        self.open.store(false, Ordering::Release);
        for waiting in waiting {
            waiting.waiter.fail(broken(kind));
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    /// Hands parsed replies to the requests at the front of the queue.
    fn deliver(&self, replies: &mut Vec<Value>) -> Result<(), ()> {
        let mut queue = lock(&self.queue);
        for reply in replies.drain(..) {
            let Some(front) = queue.waiting.front_mut() else {
                // A reply nobody asked for: the stream is out of step.
                return Err(());
            };
            match &mut front.waiter {
                Waiter::One(_) => {
                    if let Some(Waiting {
                        waiter: Waiter::One(tx),
                        ..
                    }) = queue.waiting.pop_front()
                    {
                        drop(tx.send(Ok(reply)));
                    }
                }
                Waiter::Many {
                    skip, take, got, ..
                } => {
                    if *skip > 0 {
                        *skip -= 1;
                    } else {
                        got.push(reply);
                    }
                    if *skip == 0 && got.len() >= *take {
                        if let Some(Waiting {
                            waiter: Waiter::Many { tx, got, .. },
                            ..
                        }) = queue.waiting.pop_front()
                        {
                            drop(tx.send(Ok(got)));
                        }
                    }
                }
                Waiter::Expired(left) => {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        queue.waiting.pop_front();
                    }
                }
            }
        }
        Ok(())
    }
}

/// Stops a wire when its driver ends, however it ends (an error, or the
/// runtime shutting down and dropping the task).
struct Closer(Arc<Wire>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.break_with(io::ErrorKind::ConnectionAborted);
    }
}

/// The connection's one task: writes what requests queued and reads their
/// replies, in the same poll, without blocking on either (a write that the
/// socket cannot take yet never stops replies from being read).
struct Driver {
    closer: Closer,
    stream: Arc<tokio::net::TcpStream>,
    /// Bytes being written, and how many of them are written.
    sending: Vec<u8>,
    sent: usize,
    received: Vec<u8>,
    replies: Vec<Value>,
    /// The timer for the queue's earliest deadline, made when first needed,
    /// and the deadline it is set to.
    timer: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
}

impl Driver {
    /// Writes as much as the socket takes. `Ok(true)` if anything was written.
    fn write(&mut self, cx: &mut Context<'_>) -> Result<bool, io::ErrorKind> {
        let wire = &self.closer.0;
        let mut progress = false;
        loop {
            if self.sent == self.sending.len() {
                self.sending.clear();
                self.sent = 0;
                if self.sending.capacity() > KEEP_BUFFER {
                    self.sending = Vec::new();
                }
                let mut queue = lock(&wire.queue);
                if let Some(kind) = queue.broken {
                    return Err(kind);
                }
                std::mem::swap(&mut queue.out, &mut self.sending);
                queue.writing = !self.sending.is_empty();
                if self.sending.is_empty() {
                    // Woken by the next request that finds nothing queued.
                    match &queue.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => queue.waker = Some(cx.waker().clone()),
                    }
                    return Ok(progress);
                }
            }
            match self.stream.try_write(&self.sending[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero),
                Ok(n) => {
                    self.sent += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.stream.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Err(e.kind()),
                        Poll::Pending => return Ok(progress),
                    }
                }
                Err(e) => return Err(e.kind()),
            }
        }
    }

    /// Reads what has arrived and hands out every complete reply.
    /// `Ok(true)` if anything was read.
    fn read(&mut self, cx: &mut Context<'_>) -> Result<bool, io::ErrorKind> {
        let mut progress = false;
        loop {
            self.received.reserve(READ_CHUNK);
            match self.stream.try_read_buf(&mut self.received) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof),
                Ok(_) => {
                    progress = true;
                    self.deliver()?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.stream.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Err(e.kind()),
                        Poll::Pending => return Ok(progress),
                    }
                }
                Err(e) => return Err(e.kind()),
            }
        }
    }

    /// Keeps the timer at the queue's earliest deadline, and fails the
    /// requests whose deadline has passed when it fires.
    fn watch(&mut self, cx: &mut Context<'_>) {
        let wire = &self.closer.0;
        loop {
            let earliest = {
                let mut queue = lock(&wire.queue);
                match &queue.timer_waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => queue.timer_waker = Some(cx.waker().clone()),
                }
                queue.earliest
            };
            let Some(at) = earliest else {
                return;
            };
            let timer = match &mut self.timer {
                Some(timer) => {
                    if self.armed != Some(at) {
                        timer.as_mut().reset(at);
                    }
                    timer
                }
                None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
            };
            self.armed = Some(at);
            if timer.as_mut().poll(cx).is_pending() {
                return;
            }
            self.armed = None;
            wire.expire(Instant::now());
        }
    }

    fn deliver(&mut self) -> Result<(), io::ErrorKind> {
        let mut at = 0;
        loop {
            match parse(&self.received[at..], 0) {
                Ok(Some((reply, used))) => {
                    self.replies.push(reply);
                    at += used;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "invalid reply from Redis: reconnecting");
                    return Err(io::ErrorKind::InvalidData);
                }
            }
        }
        self.received.drain(..at);
        if self.received.is_empty() && self.received.capacity() > KEEP_BUFFER {
            self.received = Vec::with_capacity(READ_CHUNK);
        }
        if !self.replies.is_empty() && self.closer.0.deliver(&mut self.replies).is_err() {
            tracing::error!("a reply from Redis that no request was waiting for: reconnecting");
            return Err(io::ErrorKind::InvalidData);
        }
        Ok(())
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Bounded, so that a connection kept busy by other threads still
        // lets this one run its other tasks.
        for _ in 0..DRIVER_ROUNDS {
            let outcome = this.write(cx).and_then(|wrote| Ok(this.read(cx)? | wrote));
            match outcome {
                // Something moved: what it freed up may allow more.
                Ok(true) => {}
                Ok(false) => {
                    this.watch(cx);
                    return Poll::Pending;
                }
                Err(kind) => {
                    this.closer.0.break_with(kind);
                    return Poll::Ready(());
                }
            }
        }
        this.watch(cx);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The first complete reply in `buf` and its length in bytes, or `None` if
/// it has not all arrived yet.
fn parse(buf: &[u8], depth: usize) -> Result<Option<(Value, usize)>, RedisError> {
    let Some((&kind, _)) = buf.split_first() else {
        return Ok(None);
    };
    let Some(cr) = memchr::memchr(b'\r', buf) else {
        return Ok(None);
    };
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(protocol("a line not ended by CRLF".to_owned())),
    }
    let line = &buf[1..cr];
    let after = cr + 2;
    let value = match kind {
        b'+' if line == b"OK" => Value::Okay,
        b'+' => Value::SimpleString(String::from_utf8_lossy(line).into_owned()),
        // redis-rs's parser, for its error kinds (NOSCRIPT, WRONGTYPE, ...).
        b'-' => ::redis::parse_redis_value(&buf[..after])?,
        b':' => Value::Int(number(line)?),
        b'$' => {
            let Some(len) = length(line, MAX_BULK)? else {
                return Ok(Some((Value::Nil, after)));
            };
            let Some(end) = after.checked_add(len) else {
                return Err(protocol(format!("a bulk reply of length {len}")));
            };
            match buf.get(end..end + 2) {
                None => return Ok(None),
                Some(b"\r\n") => {}
                Some(_) => return Err(protocol("a bulk reply not ended by CRLF".to_owned())),
            }
            return Ok(Some((Value::BulkString(buf[after..end].to_vec()), end + 2)));
        }
        b'*' => {
            let Some(count) = length(line, MAX_ARRAY)? else {
                return Ok(Some((Value::Nil, after)));
            };
            if depth >= MAX_DEPTH {
                return Err(protocol("arrays nested too deeply".to_owned()));
            }
            let mut items = Vec::with_capacity(count.min(64));
            let mut at = after;
            for _ in 0..count {
                match parse(&buf[at..], depth + 1)? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            return Ok(Some((Value::Array(items), at)));
        }
        other => return Err(protocol(format!("a reply of type {:?}", char::from(other)))),
    };
    Ok(Some((value, after)))
}

/// A bulk string's or an array's declared length: `None` for `-1` (nil),
/// an error past `max` or below `-1`.
fn length(line: &[u8], max: usize) -> Result<Option<usize>, RedisError> {
    match number(line)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .map(Some)
            .ok_or_else(|| protocol(format!("a declared length of {n}"))),
    }
}

/// A reply's decimal integer.
fn number(line: &[u8]) -> Result<i64, RedisError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            protocol(format!(
                "{:?} is not a number",
                String::from_utf8_lossy(line)
            ))
        })
}

impl Pipelined {
    /// Connects to `target` (each attempt bounded by `connect_timeout`).
    pub(crate) async fn connect(
        target: Target,
        connect_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let handle = Self {
            shared: Arc::new(Shared {
                target,
                connect_timeout,
                wire: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                attempts: Mutex::new((0, None)),
            }),
        };
        handle.wire().await?;
        Ok(handle)
    }

    fn live(&self) -> Option<Arc<Wire>> {
        lock(&self.shared.wire)
            .as_ref()
            .filter(|w| w.open.load(Ordering::Acquire))
            .cloned()
    }

    /// [`wire`](Self::wire), giving up at `deadline`.
    async fn wire_by(&self, deadline: Option<Instant>) -> Result<Arc<Wire>, RedisError> {
        if let Some(wire) = self.live() {
            return Ok(wire);
        }
        match deadline {
            // Boxed: the rare path would otherwise make every request's future larger.
            Some(at) => Box::pin(tokio::time::timeout_at(at, self.wire()))
                .await
                .map_err(|_| timed_out())?,
            None => Box::pin(self.wire()).await,
        }
    }

    /// The open connection, connecting if there is none.
    async fn wire(&self) -> Result<Arc<Wire>, RedisError> {
        if let Some(wire) = self.live() {
            return Ok(wire);
        }
        let seen = lock(&self.shared.attempts).0;
        let _connecting = self.shared.connecting.lock().await;
        if let Some(wire) = self.live() {
            return Ok(wire);
        }
        {
            // An attempt ended while this request waited: share its failure.
            let attempts = lock(&self.shared.attempts);
            if let (ended, Some(failure)) = &*attempts {
                if *ended != seen {
                    return Err(failure.error());
                }
            }
        }
        let outcome = open(&self.shared.target, self.shared.connect_timeout).await;
        let mut attempts = lock(&self.shared.attempts);
        attempts.0 += 1;
        match outcome {
            Ok(wire) => {
                attempts.1 = None;
                drop(attempts);
                let previous = lock(&self.shared.wire).replace(wire.clone());
                if let Some(previous) = previous {
                    previous.break_with(io::ErrorKind::NotConnected);
                }
                Ok(wire)
            }
            Err(e) => {
                attempts.1 = Some(Failure::of(&e));
                Err(e)
            }
        }
    }

    /// Sends one command and waits for its reply, until `deadline` if there
    /// is one. A connection that broke before the command was queued is
    /// replaced once: nothing was sent on it.
    pub(crate) async fn request(
        &self,
        cmd: &Cmd,
        deadline: Option<Instant>,
    ) -> Result<Value, RedisError> {
        for _ in 0..2 {
            let wire = self.wire_by(deadline).await?;
            let (deadline, own) = split(&wire, deadline);
            let (tx, rx) = oneshot::channel();
            if wire
                .send(
                    |out| cmd.write_packed_command(out),
                    Waiter::One(tx),
                    deadline,
                )
                .is_ok()
            {
                return reply(rx, own).await;
            }
        }
        Err(broken(io::ErrorKind::NotConnected))
    }

    /// Sends a pipeline and waits for its replies: `count` of them, after
    /// `offset` skipped.
    pub(crate) async fn request_many(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<Value>, RedisError> {
        if offset + count == 0 {
            // An empty pipeline: nothing to send, no reply to wait for (a
            // waiter for none would take the next request's reply).
            return Ok(Vec::new());
        }
        let packed = pipeline.get_packed_pipeline();
        for _ in 0..2 {
            let wire = self.wire_by(deadline).await?;
            let (deadline, own) = split(&wire, deadline);
            let (tx, rx) = oneshot::channel();
            let waiter = Waiter::Many {
                tx,
                skip: offset,
                take: count,
                got: Vec::with_capacity(count),
            };
            if wire
                .send(|out| out.extend_from_slice(&packed), waiter, deadline)
                .is_ok()
            {
                return reply(rx, own).await;
            }
        }
        Err(broken(io::ErrorKind::NotConnected))
    }
}

/// Who enforces a request's `deadline` on `wire`: the driver (the first),
/// or, when the driver runs on another runtime, the request itself (the second).
fn split(wire: &Wire, deadline: Option<Instant>) -> (Option<Instant>, Option<Instant>) {
    match deadline {
        Some(at) if !wire.driven_here() => (None, Some(at)),
        deadline => (deadline, None),
    }
}

/// A request's reply, or its failure; `own` is a deadline the request
/// enforces itself (see [`split`]).
async fn reply<T>(
    rx: oneshot::Receiver<Result<T, RedisError>>,
    own: Option<Instant>,
) -> Result<T, RedisError> {
    let outcome = match own {
        None => rx.await,
        // Boxed: the rare path would otherwise make every request's future larger.
        Some(at) => match Box::pin(tokio::time::timeout_at(at, rx)).await {
            Ok(outcome) => outcome,
            Err(_) => return Err(timed_out()),
        },
    };
    outcome.unwrap_or_else(|_| Err(broken(io::ErrorKind::ConnectionAborted)))
}

impl ::redis::aio::ConnectionLike for Pipelined {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.request(cmd, None))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.request_many(cmd, offset, count, None))
    }

    fn get_db(&self) -> i64 {
        self.shared.target.db
    }
}

/// Opens a connection and makes the handshake, within `timeout`.
async fn open(target: &Target, timeout: Duration) -> Result<Arc<Wire>, RedisError> {
    let stream = tokio::time::timeout(timeout, tcp(target))
        .await
        .map_err(|_| broken_timeout())??;
    let stream = Arc::new(stream);
    let wire = Arc::new(Wire::new(stream.clone()));
    let driver = tokio::spawn(Driver {
        closer: Closer(wire.clone()),
        stream,
        sending: Vec::new(),
        sent: 0,
        received: Vec::with_capacity(READ_CHUNK),
        replies: Vec::new(),
        timer: None,
        armed: None,
    });
    lock(&wire.tasks).push(driver.abort_handle());
    let handshake = tokio::time::timeout(timeout, handshake(&wire, target)).await;
    match handshake {
        Ok(Ok(())) => Ok(wire),
        Ok(Err(e)) => {
            wire.break_with(io::ErrorKind::NotConnected);
            Err(e)
        }
        Err(_) => {
            wire.break_with(io::ErrorKind::TimedOut);
            Err(broken_timeout())
        }
    }
}

fn broken_timeout() -> RedisError {
    io::Error::new(io::ErrorKind::TimedOut, "connecting to Redis timed out").into()
}

/// A TCP connection to the first of the host's addresses that accepts one.
async fn tcp(target: &Target) -> Result<tokio::net::TcpStream, RedisError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in tokio::net::lookup_host((target.host.as_str(), target.port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }?;
        // Notices a peer that vanished without closing, as redis-rs's keep-alive does.
        socket.set_keepalive(true)?;
        match socket.connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last.into())
}

/// `AUTH` and `SELECT` as the URL asks, then `PING`: a server that accepts
/// the connection but never answers fails here, not on the first request.
async fn handshake(wire: &Wire, target: &Target) -> Result<(), RedisError> {
    let mut commands = Vec::new();
    if let Some(password) = &target.password {
        let mut auth = ::redis::cmd("AUTH");
        if let Some(user) = &target.username {
            auth.arg(user);
        }
        auth.arg(password);
        commands.push(auth);
    }
    if target.db != 0 {
        commands.push(::redis::cmd("SELECT").arg(target.db).clone());
    }
    commands.push(::redis::cmd("PING"));
    let mut replies = Vec::new();
    for cmd in &commands {
        let (tx, rx) = oneshot::channel();
        wire.send(|out| cmd.write_packed_command(out), Waiter::One(tx), None)
            .map_err(|NotSent| broken(io::ErrorKind::NotConnected))?;
        replies.push(rx);
    }
    for rx in replies {
        let reply = rx
            .await
            .unwrap_or_else(|_| Err(broken(io::ErrorKind::ConnectionAborted)))?;
        reply.extract_error()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn whole(bytes: &[u8]) -> Value {
        let (value, used) = parse(bytes, 0).expect("valid").expect("complete");
        assert_eq!(used, bytes.len(), "{bytes:?}");
        value
    }

    #[test]
    fn parses_the_replies_a_standalone_server_sends() {
        assert_eq!(whole(b"+OK\r\n"), Value::Okay);
        assert_eq!(whole(b"+PONG\r\n"), Value::SimpleString("PONG".to_owned()));
        assert_eq!(whole(b":-42\r\n"), Value::Int(-42));
        assert_eq!(whole(b"$-1\r\n"), Value::Nil);
        assert_eq!(whole(b"*-1\r\n"), Value::Nil);
        assert_eq!(whole(b"$0\r\n\r\n"), Value::BulkString(Vec::new()));
        assert_eq!(
            whole(b"$4\r\na\r\nb\r\n"),
            Value::BulkString(b"a\r\nb".to_vec())
        );
        assert_eq!(
            whole(b"*3\r\n$1\r\nx\r\n$-1\r\n*1\r\n:1\r\n"),
            Value::Array(vec![
                Value::BulkString(b"x".to_vec()),
                Value::Nil,
                Value::Array(vec![Value::Int(1)]),
            ])
        );
        let err = whole(b"-NOSCRIPT No matching script.\r\n")
            .extract_error()
            .expect_err("an error reply");
        assert_eq!(err.kind(), ErrorKind::NoScriptError);
        let err = whole(b"-WRONGTYPE Operation against a key\r\n")
            .extract_error()
            .expect_err("an error reply");
        assert_eq!(err.code(), Some("WRONGTYPE"));
    }

    #[test]
    fn an_incomplete_reply_waits_for_more_bytes() {
        let reply = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for end in 0..reply.len() {
            assert_eq!(
                parse(&reply[..end], 0).expect("valid so far"),
                None,
                "{end}"
            );
        }
        let mut two = reply.to_vec();
        two.extend_from_slice(b"+OK\r\n");
        let (_, used) = parse(&two, 0).expect("valid").expect("complete");
        assert_eq!(used, reply.len());
    }

    /// A scripted server: answers the handshake's `PING`, then hands the
    /// connection to the test.
    async fn scripted() -> (tokio::net::TcpListener, Target) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = Target {
            host: "127.0.0.1".to_owned(),
            port,
            db: 0,
            username: None,
            password: None,
        };
        (listener, target)
    }

    /// A connection to the scripted server at `target`.
    async fn connected(target: Target) -> Pipelined {
        Pipelined::connect(target, Duration::from_secs(2))
            .await
            .expect("connect")
    }

    /// Accepts a connection, reads until `seen` has arrived, and answers the
    /// handshake's `PING`.
    async fn accept(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
        let (mut stream, _) = listener.accept().await.expect("accept");
        read_until(&mut stream, b"PING").await;
        stream.write_all(b"+PONG\r\n").await.expect("write");
        stream
    }

    async fn read_until(stream: &mut tokio::net::TcpStream, seen: &[u8]) {
        let mut got = Vec::new();
        while !got.windows(seen.len()).any(|w| w == seen) {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before {seen:?}");
            got.extend_from_slice(&chunk[..n]);
        }
    }

    fn get(key: &str) -> Cmd {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(key);
        cmd
    }

    #[tokio::test]
    async fn a_dropped_request_keeps_its_place_and_its_reply_is_thrown_away() {
        let (listener, target) = scripted().await;
        let server = tokio::spawn(async move {
            let mut stream = accept(&listener).await;
            // Both requests arrive before either is answered.
            read_until(&mut stream, b"second").await;
            stream
                .write_all(b"$5\r\nfirst\r\n$6\r\nsecond\r\n")
                .await
                .expect("write");
            stream
        });
        let connection = connected(target).await;
        let first = get("first");
        let abandoned =
            tokio::time::timeout(Duration::from_millis(50), connection.request(&first, None)).await;
        assert!(abandoned.is_err(), "the server has not answered yet");
        let second = connection
            .request(&get("second"), None)
            .await
            .expect("reply");
        assert_eq!(second, Value::BulkString(b"second".to_vec()));
        drop(server.await.expect("server"));
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_fails_and_keeps_its_place() {
        let (listener, target) = scripted().await;
        let (answer, answered) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let mut stream = accept(&listener).await;
            read_until(&mut stream, b"second").await;
            // Both replies go out only once the first request has given up.
            answered.await.expect("signal");
            stream
                .write_all(b"$4\r\nlate\r\n:1\r\n:2\r\n$6\r\nsecond\r\n")
                .await
                .expect("write");
            stream
        });
        let connection = connected(target).await;
        let started = Instant::now();
        let deadline = Some(started + Duration::from_millis(100));
        let late = get("late");
        let mut pipeline = ::redis::pipe();
        pipeline.cmd("INCR").arg("a").cmd("INCR").arg("b");
        let (single, many) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(
                connection.request(&late, deadline),
                connection.request_many(&pipeline, 0, 2, deadline)
            )
        })
        .await
        .expect("the deadline is enforced");
        let took = started.elapsed();
        let single = single.expect_err("no reply before the deadline");
        let many = many.expect_err("no replies before the deadline");
        assert!(
            single.is_timeout() && many.is_timeout(),
            "{single:?} {many:?}"
        );
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(1),
            "took {took:?}"
        );
        let second = connection.clone();
        let second = tokio::spawn(async move { second.request(&get("second"), None).await });
        answer.send(()).expect("server waiting");
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the late replies are thrown away, not handed on")
            .expect("task")
            .expect("reply");
        assert_eq!(second, Value::BulkString(b"second".to_vec()));
        drop(server.await.expect("server"));
    }

    #[tokio::test]
    async fn a_later_request_with_an_earlier_deadline_fails_at_its_own() {
        let (listener, target) = scripted().await;
        let (done, finished) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            // Answers the handshake, then reads nothing more: the client's
            // writes stall once the socket's buffers are full.
            let stream = accept(&listener).await;
            let _ = finished.await;
            stream
        });
        let connection = connected(target).await;
        let patient = connection.clone();
        let huge = get(&"x".repeat(32 << 20));
        let mut patient = tokio::spawn(async move {
            patient
                .request(&huge, Some(Instant::now() + Duration::from_secs(30)))
                .await
        });
        // The driver is now stuck writing, with its timer at the first deadline,
        // and nothing that a new request queues wakes it to write.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            connection.request(&get("short"), Some(started + Duration::from_millis(100))),
        )
        .await
        .expect("the earlier deadline is enforced")
        .expect_err("never answered");
        assert!(err.is_timeout(), "{err:?}");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut patient)
                .await
                .is_err(),
            "the first request still has time"
        );
        patient.abort();
        let _ = done.send(());
        drop(server.await.expect("server"));
    }

    // Two workers: the scripted server answers the handshake while this
    // test waits for the other runtime's connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_from_another_runtime_keeps_its_own_deadline() {
        let (listener, target) = scripted().await;
        let server = tokio::spawn(async move {
            // Answers the handshake, then nothing, until the client hangs up.
            let mut stream = accept(&listener).await;
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        });
        // The connection is made on a runtime that then stops running:
        // its driver runs nowhere.
        let (made, connection) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let idle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let connection = runtime
                .block_on(Pipelined::connect(target, Duration::from_secs(2)))
                .expect("connect");
            made.send(connection).expect("send");
            let _ = stopped.recv();
        });
        let connection = connection.recv().expect("connected");
        let started = Instant::now();
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            connection.request(
                &get("elsewhere"),
                Some(started + Duration::from_millis(100)),
            ),
        )
        .await
        .expect("the deadline is enforced without the driver")
        .expect_err("never answered");
        assert!(err.is_timeout(), "{err:?}");
        drop(connection);
        stop.send(()).expect("stop");
        idle.join().expect("thread");
        server.await.expect("server");
    }

    #[tokio::test]
    async fn an_empty_pipeline_waits_for_no_reply() {
        let (listener, target) = scripted().await;
        let server = tokio::spawn(async move {
            let mut stream = accept(&listener).await;
            read_until(&mut stream, b"after").await;
            stream.write_all(b"$5\r\nafter\r\n").await.expect("write");
            stream
        });
        let connection = connected(target).await;
        let empty = connection
            .request_many(&::redis::pipe(), 0, 0, None)
            .await
            .expect("nothing to wait for");
        assert!(empty.is_empty());
        let after = connection
            .request(&get("after"), None)
            .await
            .expect("reply");
        assert_eq!(after, Value::BulkString(b"after".to_vec()));
        drop(server.await.expect("server"));
    }

    #[tokio::test]
    async fn a_reply_nobody_asked_for_breaks_the_connection_and_the_next_request_reconnects() {
        let (listener, target) = scripted().await;
        let server = tokio::spawn(async move {
            let mut stream = accept(&listener).await;
            stream.write_all(b"+STRAY\r\n").await.expect("write");
            // The client hangs up on the stray reply.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            let mut stream = accept(&listener).await;
            read_until(&mut stream, b"again").await;
            stream.write_all(b":7\r\n").await.expect("write");
            stream
        });
        let connection = connected(target).await;
        let mut reply = None;
        for _ in 0..100 {
            if connection.live().is_none() {
                reply = Some(
                    connection
                        .request(&get("again"), None)
                        .await
                        .expect("reconnected"),
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            reply,
            Some(Value::Int(7)),
            "the stray reply broke the connection"
        );
        drop(server.await.expect("server"));
    }

    #[tokio::test]
    async fn a_server_too_far_behind_has_its_connection_replaced() {
        let (listener, target) = scripted().await;
        let server = tokio::spawn(async move {
            // The first connection takes commands and never answers them.
            let silent = accept(&listener).await;
            let mut stream = accept(&listener).await;
            read_until(&mut stream, b"fresh").await;
            stream.write_all(b"$5\r\nfresh\r\n").await.expect("write");
            (silent, stream)
        });
        let connection = connected(target).await;
        let stuck = get("stuck");
        let mut waiting = Vec::new();
        for _ in 0..MAX_WAITING {
            let connection = connection.clone();
            let stuck = stuck.clone();
            waiting.push(tokio::spawn(async move {
                connection.request(&stuck, None).await
            }));
        }
        let queued = || {
            connection
                .live()
                .map_or(0, |wire| lock(&wire.queue).waiting.len())
        };
        while queued() < MAX_WAITING {
            tokio::task::yield_now().await;
        }
        let fresh = tokio::time::timeout(
            Duration::from_secs(5),
            connection.request(&get("fresh"), None),
        )
        .await
        .expect("not queued behind the stuck requests")
        .expect("a new connection");
        assert_eq!(fresh, Value::BulkString(b"fresh".to_vec()));
        for request in waiting {
            let err = request.await.expect("task").expect_err("given up");
            assert!(err.is_timeout(), "{err:?}");
        }
        drop(server.await.expect("server"));
    }

    #[tokio::test]
    async fn requests_in_flight_fail_when_the_connection_breaks() {
        let (listener, target) = scripted().await;
        let server = tokio::spawn(async move {
            let mut stream = accept(&listener).await;
            read_until(&mut stream, b"lost").await;
            drop(stream);
            listener
        });
        let connection = connected(target).await;
        let err = connection
            .request(&get("lost"), None)
            .await
            .expect_err("the server hung up");
        assert!(err.is_io_error(), "{err:?}");
        drop(server.await.expect("server"));
    }

    /// A reply as a server would send it.
    fn encode(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Nil => out.extend_from_slice(b"$-1\r\n"),
            Value::Okay => out.extend_from_slice(b"+OK\r\n"),
            Value::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Value::BulkString(bytes) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Value::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    encode(item, out);
                }
            }
            other => unreachable!("not generated: {other:?}"),
        }
    }

    fn reply() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Nil),
            Just(Value::Okay),
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::BulkString),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
        })
    }

    proptest::proptest! {
        #[test]
        fn every_reply_parses_whole_and_no_prefix_of_it_does(value in reply()) {
            let mut bytes = Vec::new();
            encode(&value, &mut bytes);
            proptest::prop_assert_eq!(whole(&bytes), value);
            for end in 0..bytes.len() {
                proptest::prop_assert!(parse(&bytes[..end], 0).expect("valid so far").is_none());
            }
        }

        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Ok(Some((_, used))) = parse(&bytes, 0) {
                proptest::prop_assert!(used <= bytes.len());
            }
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [
            &b"?what\r\n"[..],
            b"$abc\r\n",
            b"$-2\r\n",
            b"$3\r\nabcXY",
            b":1\rX",
            b"*-5\r\n",
            b"$99999999999999999999\r\n",
            b"$9223372036854775807\r\n",
            b"*9223372036854775807\r\n",
            b"%1\r\n",
        ] {
            assert!(parse(bad, 0).is_err(), "{bad:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(parse(deep.as_bytes(), 0).is_err());
    }
}
