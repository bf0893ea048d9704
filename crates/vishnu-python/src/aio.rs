//! Engine futures as asyncio awaitables, with no engine thread ever touching
//! Python.
//!
//! A future that needs no I/O completes on its first poll and is answered
//! with an already finished asyncio future. Any other runs on the engine's
//! runtime; when it ends, its result (still a Rust value) goes into the
//! event loop's queue and one byte into a socket pair whose read end the loop
//! watches (`loop.add_reader`). The loop's own thread then turns the results
//! into Python objects and resolves the futures. An engine thread that held
//! the GIL to resolve a future itself (as `call_soon_threadsafe` from a
//! foreign thread does) could still hold it while the interpreter shuts
//! down, which crashes it.

use std::collections::HashMap;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::IntoPyObjectExt;

/// A finished result, turned into Python on the loop's thread.
type Outcome = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// What the engine's threads share with one event loop.
struct Shared {
    done: Mutex<Vec<(u64, Outcome)>>,
    wake: UnixStream,
}

impl Shared {
    fn complete(&self, token: u64, outcome: Outcome) {
        if let Ok(mut done) = self.done.lock() {
            done.push((token, outcome));
        }
        // A full socket buffer means a wake-up is already pending.
        let _ = (&self.wake).write(&[1]);
    }
}

/// One event loop's end: its pending futures, and the socket it watches.
#[pyclass(frozen, module = "vishnu._vishnu")]
pub(crate) struct LoopBridge {
    shared: Arc<Shared>,
    reader: UnixStream,
    pending: Mutex<HashMap<u64, Py<PyAny>>>,
    next: AtomicU64,
}

#[pymethods]
impl LoopBridge {
    /// Called by the event loop when the socket is readable: resolves the
    /// futures whose results arrived.
    fn _on_ready(&self, py: Python<'_>) -> PyResult<()> {
        let mut buf = [0u8; 256];
        loop {
            match (&self.reader).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: drained
            }
        }
        let done = match self.shared.done.lock() {
            Ok(mut done) => std::mem::take(&mut *done),
            Err(_) => {
                return Err(PyRuntimeError::new_err(
                    "vishnu: a poisoned completion queue",
                ))
            }
        };
        for (token, outcome) in done {
            let future = match self.pending.lock() {
                Ok(mut pending) => pending.remove(&token),
                Err(_) => None,
            };
            let Some(future) = future else { continue };
            let future = future.bind(py);
            // A cancelled future is done: its result has nowhere to go.
            if future.call_method0("done")?.is_truthy()? {
                continue;
            }
            match outcome(py) {
                Ok(value) => future.call_method1("set_result", (value,))?,
                Err(err) => future.call_method1("set_exception", (err.into_value(py),))?,
            };
        }
        Ok(())
    }
}

/// The running loop's bridge, made (and its socket watched) on first use.
fn bridge<'py>(
    py: Python<'py>,
    event_loop: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, LoopBridge>> {
    static BRIDGES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let bridges = BRIDGES
        .get_or_try_init(py, || {
            py.import("weakref")?
                .getattr("WeakKeyDictionary")?
                .call0()
                .map(Bound::unbind)
        })?
        .bind(py);
    let found = bridges.call_method1("get", (event_loop,))?;
    if !found.is_none() {
        return Ok(found.cast_into::<LoopBridge>()?);
    }
    let (reader, wake) = UnixStream::pair()
        .and_then(|(r, w)| {
            r.set_nonblocking(true)?;
            w.set_nonblocking(true)?;
            Ok((r, w))
        })
        .map_err(|e| PyRuntimeError::new_err(format!("vishnu: cannot make a socket pair: {e}")))?;
    let fd = reader.as_raw_fd();
    let made = Bound::new(
        py,
        LoopBridge {
            shared: Arc::new(Shared {
                done: Mutex::new(Vec::new()),
                wake,
            }),
            reader,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        },
    )?;
    event_loop.call_method1("add_reader", (fd, made.getattr("_on_ready")?))?;
    bridges.set_item(event_loop, &made)?;
    Ok(made)
}

/// A Python awaitable for `future`, run on `rt` unless (with `try_now`) it
/// completes at its first poll, here ([`Ready`]).
pub(crate) fn awaitable<'py, F, T>(
    py: Python<'py>,
    rt: &'static tokio::runtime::Runtime,
    try_now: bool,
    future: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let mut future = Box::pin(future);
    let polled = if try_now {
        let _runtime = rt.enter();
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    } else {
        Poll::Pending
    };
    match polled {
        Poll::Ready(outcome) => {
            let outcome = outcome.and_then(|value| value.into_py_any(py));
            Ok(Bound::new(py, Ready(Mutex::new(Some(outcome))))?.into_any())
        }
        Poll::Pending => {
            let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
            let result = event_loop.call_method0("create_future")?;
            let bridge = bridge(py, &event_loop)?;
            let bridge = bridge.get();
            let token = bridge.next.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut pending) = bridge.pending.lock() {
                pending.insert(token, result.clone().unbind());
            }
            let shared = bridge.shared.clone();
            // Polled again, with a real waker, on the runtime.
            crate::drive_in_background(rt)?;
            rt.spawn(async move {
                let outcome = future.await;
                shared.complete(
                    token,
                    Box::new(move |py| outcome.and_then(|value| value.into_py_any(py))),
                );
            });
            Ok(result)
        }
    }
}

/// An awaitable whose result is already there: awaiting it returns at once,
/// without an asyncio future or a trip through the event loop.
#[pyclass(frozen, module = "vishnu._vishnu")]
pub(crate) struct Ready(Mutex<Option<PyResult<Py<PyAny>>>>);

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Ends the iteration at once with the result (or raises the error).
    fn __next__(&self) -> PyResult<Py<PyAny>> {
        let taken = self.0.lock().ok().and_then(|mut slot| slot.take());
        match taken {
            Some(Ok(value)) => Err(pyo3::exceptions::PyStopIteration::new_err((value,))),
            Some(Err(err)) => Err(err),
            None => Err(PyRuntimeError::new_err(
                "vishnu: this awaitable was already awaited",
            )),
        }
    }

    /// As `__next__` (the coroutine protocol's `send`).
    fn send(&self, _value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__next__()
    }
}
