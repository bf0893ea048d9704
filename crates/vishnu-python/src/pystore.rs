//! A `SessionStore` written in Python: an object with `load`, `create`, `save`,
//! `delete`, `touch` and `delete_expired` methods over JSON text records.
//! Calls run inline, on the thread that polls the engine's future: from the
//! Python front that is the request's own thread (the engine blocks on its
//! future there, with the GIL released), so stores that rely on per-request
//! thread state (App Engine's API context) keep working.

use std::time::Duration;

use async_trait::async_trait;
use pyo3::prelude::*;
use vishnu::id::StoreKey;
use vishnu::record::{Millis, Record};
use vishnu::{Cleanup, SaveOutcome, SessionStore, StoreError};

pub(crate) struct PyStore {
    object: std::sync::Arc<Py<PyAny>>,
}

impl PyStore {
    pub(crate) fn new(object: Py<PyAny>) -> Self {
        Self {
            object: std::sync::Arc::new(object),
        }
    }

    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Python<'_>, &Bound<'_, PyAny>) -> PyResult<T> + Send + 'static,
    {
        Python::attach(|py| {
            f(py, self.object.bind(py))
                .map_err(|e| StoreError::Unavailable(format!("python store: {e}")))
        })
    }
}

fn decode(text: Option<String>) -> Result<Option<Record>, StoreError> {
    match text {
        None => Ok(None),
        Some(t) => Record::from_json(t.as_bytes())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string())),
    }
}

#[async_trait]
impl SessionStore for PyStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let key = key.as_str().to_owned();
        let text = self
            .call(move |_, o| o.call_method1("load", (key,))?.extract::<Option<String>>())
            .await?;
        decode(text)
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        let (key, json) = (
            key.as_str().to_owned(),
            String::from_utf8_lossy(&record.to_json()).into_owned(),
        );
        let expires = record.expires_at;
        self.call(move |_, o| {
            o.call_method1("create", (key, json, expires))?
                .extract::<bool>()
        })
        .await
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let (key, json) = (
            key.as_str().to_owned(),
            String::from_utf8_lossy(&record.to_json()).into_owned(),
        );
        let expires = record.expires_at;
        let outcome = self
            .call(move |_, o| {
                o.call_method1("save", (key, json, expected, expires))?
                    .extract::<String>()
            })
            .await?;
        match outcome.as_str() {
            "saved" => Ok(SaveOutcome::Saved),
            "conflict" => Ok(SaveOutcome::Conflict),
            "missing" => Ok(SaveOutcome::Missing),
            other => Err(StoreError::Corrupt(format!(
                "python store save() returned {other:?}; expected 'saved', 'conflict' or 'missing'"
            ))),
        }
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let key = key.as_str().to_owned();
        self.call(move |_, o| o.call_method1("delete", (key,)).map(|_| ()))
            .await
    }

    async fn touch(
        &self,
        key: &StoreKey,
        last_access: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        let key = key.as_str().to_owned();
        self.call(move |_, o| {
            o.call_method1("touch", (key, last_access, expires_at))?
                .extract::<bool>()
        })
        .await
    }

    async fn delete_expired(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        let dormant = dormant_for.as_secs();
        let (removed, more) = self
            .call(move |_, o| {
                o.call_method1("delete_expired", (now, dormant, limit))?
                    .extract::<(u64, bool)>()
            })
            .await?;
        Ok(Cleanup { removed, more })
    }
}
