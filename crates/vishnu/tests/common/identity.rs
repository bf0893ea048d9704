//! Identity conformance: id changes, grace windows and a user's sessions, on
//! every store, with the races forced step by step.
//!
//! [`ScriptedStore`] wraps the store under test and can pause one call (an
//! operation on a given key) until the test releases it. A test starts one
//! request, waits until it reaches the paused step, runs the racing request
//! to completion, then releases the first: the interleaving is exact, not
//! hoped for. Two "processes" are two engines over one store (each with its
//! own write locks, as two servers have).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::HeaderValue;
use tokio::sync::oneshot;
use vishnu::id::{SessionId, StoreKey, ID_LEN};
use vishnu::record::{Millis, Record};
use vishnu::{
    Cleanup, Config, Engine, SaveOutcome, Session, SessionError, SessionStore, StoreError,
};

use super::{MockClock, SECRET};

/// A store operation, for [`ScriptedStore::pause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Load,
    Create,
    Save,
    Delete,
}

struct Gate {
    op: Op,
    key: StoreKey,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// A paused store call: wait until a request reaches it, then let it go on.
pub struct Pause {
    reached: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl Pause {
    pub async fn reached(&mut self) {
        tokio::time::timeout(Duration::from_secs(20), &mut self.reached)
            .await
            .expect("the paused step was never reached")
            .expect("gate dropped");
    }
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

/// Delegates to a real store; pauses calls on demand and logs every write.
pub struct ScriptedStore {
    inner: Arc<dyn SessionStore>,
    gates: Mutex<Vec<Gate>>,
    /// Every key and record written (create, save), as the store received them.
    pub written: Mutex<Vec<(String, Vec<u8>)>>,
    /// Every key created.
    pub created: Mutex<Vec<StoreKey>>,
}

impl ScriptedStore {
    pub fn new(inner: Arc<dyn SessionStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gates: Mutex::new(Vec::new()),
            written: Mutex::new(Vec::new()),
            created: Mutex::new(Vec::new()),
        })
    }

    /// Pauses the next `op` on `key` before it reaches the store.
    pub fn pause(&self, op: Op, key: &StoreKey) -> Pause {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.gates.lock().expect("gates").push(Gate {
            op,
            key: key.clone(),
            reached: reached_tx,
            release: release_rx,
        });
        Pause {
            reached: reached_rx,
            release: release_tx,
        }
    }

    async fn gate(&self, op: Op, key: &StoreKey) {
        let gate = {
            let mut gates = self.gates.lock().expect("gates");
            let at = gates.iter().position(|g| g.op == op && g.key == *key);
            at.map(|i| gates.remove(i))
        };
        if let Some(gate) = gate {
            let _ = gate.reached.send(());
            let _ = gate.release.await;
        }
    }

    fn log(&self, key: &StoreKey, record: &Record) {
        self.written
            .lock()
            .expect("log")
            .push((key.as_str().to_owned(), record.to_json()));
    }
}

#[async_trait]
impl SessionStore for ScriptedStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.gate(Op::Load, key).await;
        self.inner.load(key).await
    }
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        self.gate(Op::Create, key).await;
        self.log(key, record);
        self.created.lock().expect("created").push(key.clone());
        self.inner.create(key, record).await
    }
    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.gate(Op::Save, key).await;
        self.log(key, record);
        self.inner.save(key, record, expected).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.gate(Op::Delete, key).await;
        self.inner.delete(key).await
    }
    async fn touch(&self, key: &StoreKey, a: Millis, e: Millis) -> Result<bool, StoreError> {
        self.inner.touch(key, a, e).await
    }
    async fn delete_expired(
        &self,
        now: Millis,
        dormant_for: Duration,
        limit: usize,
    ) -> Result<Cleanup, StoreError> {
        self.inner.delete_expired(now, dormant_for, limit).await
    }
}

/// A store under test, a shared clock, and two "processes".
pub struct World {
    pub store: Arc<ScriptedStore>,
    pub clock: Arc<MockClock>,
    /// Renews ids every minute.
    pub one: Engine,
    /// Never renews on its own.
    pub two: Engine,
    /// Renews ids every minute, like `one` (a second server).
    pub three: Engine,
}

const GRACE: Duration = Duration::from_secs(10);
const RENEW_EVERY: Duration = Duration::from_secs(60);

impl World {
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        let store = ScriptedStore::new(store);
        let clock = MockClock::new();
        let config = |renew: bool| {
            let mut b = Config::builder()
                .secret(SECRET)
                .shared_store(store.clone())
                .clock(clock.clone())
                .timeout(Duration::from_secs(600))
                .cycle_grace(GRACE)
                .renew_grace(GRACE)
                .auto_save(true);
            if renew {
                b = b.renew_every(RENEW_EVERY);
            }
            b.build().expect("config")
        };
        Self {
            one: Engine::new(config(true)),
            two: Engine::new(config(false)),
            three: Engine::new(config(true)),
            store,
            clock,
        }
    }

    /// Whether any key this test created still holds a live session.
    pub async fn any_live(&self) -> bool {
        let created = self.store.created.lock().expect("created").clone();
        for key in created {
            if let Some(r) = self.store.inner.load(&key).await.expect("load") {
                if r.moved.is_none() && r.data.contains_key("secret") {
                    return true;
                }
            }
        }
        false
    }
}

/// Ends the request on `engine` and returns the cookie pair it was sent.
pub async fn finish_pair(engine: &Engine, s: &Session) -> String {
    pair(
        &engine
            .finish(s, 200)
            .await
            .expect("finish")
            .expect("a cookie"),
    )
}

/// The `name=value` pair of a Set-Cookie value.
pub fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("pair").to_owned()
}

pub fn header(pair: &str) -> Vec<HeaderValue> {
    vec![HeaderValue::from_str(pair).expect("header")]
}

/// The session id inside a signed cookie pair (version byte, 16 id bytes, tag).
pub fn id_of(pair: &str) -> SessionId {
    let value = pair.split_once('=').expect("name=value").1;
    let bytes = URL_SAFE_NO_PAD.decode(value).expect("base64");
    SessionId::from_bytes(<[u8; ID_LEN]>::try_from(&bytes[1..1 + ID_LEN]).expect("id"))
}

pub fn key_of(pair: &str) -> StoreKey {
    id_of(pair).store_key()
}

/// A new session with `secret = 1` (and bound to `user`, when given); its cookie pair.
pub async fn start(engine: &Engine, user: Option<&str>) -> String {
    let s = engine.begin(vec![]);
    s.set("secret", &1).expect("set");
    s.set("n", &0).expect("set");
    match user {
        Some(u) => {
            s.set_label(&format!("device of {u}"));
            s.login(u).await.expect("login");
        }
        None => s.save().await.expect("save"),
    }
    pair(
        &engine
            .finish(&s, 200)
            .await
            .expect("finish")
            .expect("cookie"),
    )
}

/// What a request with `pair` sees of `secret`, and the cookie it is sent.
pub async fn peek(engine: &Engine, pair: &str) -> (Option<u64>, Option<String>) {
    let s = engine.begin(header(pair));
    let v = s.get::<u64>("secret").await.expect("get");
    let cookie = engine.finish(&s, 200).await.expect("finish");
    (v, cookie)
}

async fn dead(w: &World, pairs: &[&str]) {
    for p in pairs {
        assert_eq!(
            peek(&w.two, p).await.0,
            None,
            "a session came back under {p}"
        );
    }
}

/// A request on `engine` that reads the session, then ends (renewing, on `one`, when due).
async fn read_and_finish(
    engine: Engine,
    pair: String,
) -> (Session, Result<Option<String>, SessionError>) {
    let s = engine.begin(header(&pair));
    let _ = s.get::<u64>("secret").await;
    let out = engine.finish(&s, 200).await;
    (s, out)
}

pub async fn terminate_between_an_id_changes_steps_ends_both_ids(store: Arc<dyn SessionStore>) {
    for renew in [false, true] {
        let w = World::new(store.clone());
        let p0 = start(&w.one, None).await;
        let mut pause = w.store.pause(Op::Save, &key_of(&p0));
        let changer = if renew {
            w.clock.advance(RENEW_EVERY);
            let one = w.one.clone();
            let p = p0.clone();
            tokio::spawn(async move { read_and_finish(one, p).await.1.map(|_| ()) })
        } else {
            let one = w.one.clone();
            let p = p0.clone();
            tokio::spawn(async move {
                let s = one.begin(header(&p));
                s.cycle_id().await
            })
        };
        // The id change has created its new key and waits to move the old one.
        pause.reached().await;
        let t = w.two.begin(header(&p0));
        t.terminate().await.expect("terminate");
        pause.release();
        let outcome = changer.await.expect("task");
        if !renew {
            assert!(
                matches!(outcome, Err(SessionError::Terminated)),
                "{outcome:?}"
            );
        }
        dead(&w, &[&p0]).await;
        assert!(
            !w.any_live().await,
            "renew={renew}: a terminated session lives on under a new id"
        );
    }
}

pub async fn terminate_that_loaded_before_an_id_change_follows_it(store: Arc<dyn SessionStore>) {
    for renew in [false, true] {
        let w = World::new(store.clone());
        let p0 = start(&w.one, None).await;
        // The terminate loads the session, then waits before its compare-and-set.
        let mut pause = w.store.pause(Op::Save, &key_of(&p0));
        let two = w.two.clone();
        let p = p0.clone();
        let terminate = tokio::spawn(async move { two.begin(header(&p)).terminate().await });
        pause.reached().await;
        // Meanwhile the id changes.
        let p1 = if renew {
            w.clock.advance(RENEW_EVERY);
            let (_, cookie) = read_and_finish(w.one.clone(), p0.clone()).await;
            pair(&cookie.expect("finish").expect("new id"))
        } else {
            let s = w.one.begin(header(&p0));
            s.cycle_id().await.expect("cycle");
            finish_pair(&w.one, &s).await
        };
        assert_ne!(p1, p0);
        assert_eq!(
            peek(&w.two, &p1).await.0,
            Some(1),
            "the new id works before"
        );
        pause.release();
        terminate.await.expect("task").expect("terminate");
        dead(&w, &[&p0, &p1]).await;
        assert!(!w.any_live().await, "renew={renew}: the session lives on");
    }
}

pub async fn save_racing_a_cycle_is_refused_not_lost(store: Arc<dyn SessionStore>) {
    let w = World::new(store);
    let p0 = start(&w.one, None).await;
    let a = w.two.begin(header(&p0));
    assert_eq!(a.get::<u64>("secret").await.expect("get"), Some(1));
    a.set("note", "from the pre-login id").expect("set");
    let mut pause = w.store.pause(Op::Save, &key_of(&p0));
    let a2 = a.clone();
    let save = tokio::spawn(async move { a2.save().await });
    pause.reached().await;
    let s = w.one.begin(header(&p0));
    s.login("ada").await.expect("login");
    let p1 = finish_pair(&w.one, &s).await;
    pause.release();
    let outcome = save.await.expect("task");
    assert!(
        matches!(outcome, Err(SessionError::Superseded)),
        "{outcome:?}"
    );
    assert_eq!(
        w.two.finish(&a, 200).await.expect("finish"),
        None,
        "no cookie at all"
    );
    let after = w.one.begin(header(&p1));
    assert_eq!(after.get::<String>("note").await.expect("get"), None);
    assert_eq!(after.user().await.expect("user").as_deref(), Some("ada"));
}

pub async fn update_racing_a_renewal_lands_once_under_the_new_id(store: Arc<dyn SessionStore>) {
    let w = World::new(store);
    let p0 = start(&w.one, None).await;
    let a = w.two.begin(header(&p0));
    assert_eq!(a.get::<u64>("n").await.expect("get"), Some(0));
    let mut pause = w.store.pause(Op::Save, &key_of(&p0));
    let a2 = a.clone();
    let update =
        tokio::spawn(async move { a2.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).await });
    pause.reached().await;
    w.clock.advance(RENEW_EVERY);
    let (_, cookie) = read_and_finish(w.one.clone(), p0.clone()).await;
    let p1 = pair(&cookie.expect("finish").expect("renewed"));
    pause.release();
    assert_eq!(update.await.expect("task").expect("update"), 1);
    let sent = w
        .two
        .finish(&a, 200)
        .await
        .expect("finish")
        .expect("cookie");
    assert_eq!(pair(&sent), p1, "the racing request is sent the new id");
    let s = w.two.begin(header(&p1));
    assert_eq!(
        s.get::<u64>("n").await.expect("get"),
        Some(1),
        "exactly once"
    );
}

pub async fn renewals_racing_converge_on_one_id(store: Arc<dyn SessionStore>) {
    let w = World::new(store);
    let p0 = start(&w.one, None).await;
    w.clock.advance(RENEW_EVERY);
    let mut pause = w.store.pause(Op::Save, &key_of(&p0));
    let slow = tokio::spawn(read_and_finish(w.one.clone(), p0.clone()));
    pause.reached().await;
    let (_, fast) = read_and_finish(w.three.clone(), p0.clone()).await;
    let p1 = pair(&fast.expect("finish").expect("renewed"));
    pause.release();
    let (_, slow) = slow.await.expect("task");
    assert_eq!(
        pair(&slow.expect("finish").expect("cookie")),
        p1,
        "one id, not a fork"
    );
    // Within the grace window the old id is served the same session and the same new id.
    for _ in 0..3 {
        let (v, cookie) = peek(&w.two, &p0).await;
        assert_eq!(v, Some(1));
        assert_eq!(pair(&cookie.expect("cookie")), p1);
    }
    // After it, the old id is dead; the new one lives.
    w.clock.advance(GRACE + Duration::from_millis(1));
    let (v, cookie) = peek(&w.two, &p0).await;
    assert_eq!(v, None);
    assert!(
        cookie.is_some_and(|c| c.contains("Max-Age=0")),
        "only a removal"
    );
    assert_eq!(peek(&w.two, &p1).await.0, Some(1));
    let live: Vec<StoreKey> = {
        let created = w.store.created.lock().expect("created").clone();
        let mut live = Vec::new();
        for k in created {
            if let Some(r) = w.store.inner.load(&k).await.expect("load") {
                if r.moved.is_none() && r.data.contains_key("secret") {
                    live.push(k);
                }
            }
        }
        live
    };
    assert_eq!(
        live,
        vec![key_of(&p1)],
        "exactly one live copy of the session"
    );
}

pub async fn cycle_grace_sends_no_cookie_and_refuses_writes(store: Arc<dyn SessionStore>) {
    let w = World::new(store);
    let p0 = start(&w.one, None).await;
    let s = w.one.begin(header(&p0));
    s.login("ada").await.expect("login");
    let p1 = finish_pair(&w.one, &s).await;
    // Inside the grace window: the old id reads nothing, gets no cookie, cannot write.
    assert_eq!(peek(&w.two, &p0).await, (None, None));
    let late = w.two.begin(header(&p0));
    let refused = late.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).await;
    assert!(
        matches!(refused, Err(SessionError::Superseded)),
        "{refused:?}"
    );
    assert_eq!(w.two.finish(&late, 200).await.expect("finish"), None);
    let late = w.two.begin(header(&p0));
    late.set("x", &1).expect("set");
    assert!(matches!(
        w.two.finish(&late, 200).await,
        Err(SessionError::Superseded)
    ));
    assert!(matches!(
        w.two.begin(header(&p0)).terminate().await,
        Err(SessionError::Superseded)
    ));
    assert_eq!(
        peek(&w.two, &p1).await.0,
        Some(1),
        "the new session is untouched"
    );
    // After it, the old id is simply unknown: a write starts a fresh session.
    w.clock.advance(GRACE);
    let after = w.two.begin(header(&p0));
    assert_eq!(after.get::<u64>("secret").await.expect("get"), None);
    after.set("x", &1).expect("set");
    let fresh = finish_pair(&w.two, &after).await;
    assert_ne!(fresh, p0);
    assert_ne!(fresh, p1);
}

pub async fn the_store_holds_no_usable_id(store: Arc<dyn SessionStore>) {
    let w = World::new(store);
    let user = URL_SAFE_NO_PAD.encode(id_of(&start(&w.two, None).await).as_bytes());
    let p0 = start(&w.one, Some(&user)).await;
    w.clock.advance(RENEW_EVERY);
    let (_, cookie) = read_and_finish(w.one.clone(), p0.clone()).await;
    let p1 = pair(&cookie.expect("finish").expect("renewed"));
    let s = w.one.begin(header(&p1));
    assert_eq!(s.sessions().await.expect("list").len(), 1);
    let written = w.store.written.lock().expect("log").clone();
    assert!(written.len() >= 4);
    for p in [&p0, &p1] {
        let id = id_of(p);
        let value = p.split_once('=').expect("pair").1;
        let hex: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let b64 = URL_SAFE_NO_PAD.encode(id.as_bytes());
        for (key, json) in &written {
            let json = String::from_utf8_lossy(json);
            for secret in [value, &hex, &b64] {
                assert!(
                    !key.contains(secret) && !json.contains(secret),
                    "an id in the store: {json}"
                );
            }
        }
    }
}

pub async fn a_users_sessions_are_listed_and_revoked(store: Arc<dyn SessionStore>) {
    let w = World::new(store);
    let user = format!(
        "ada-{}",
        URL_SAFE_NO_PAD.encode(id_of(&start(&w.two, None).await).as_bytes())
    );
    let laptop = start(&w.two, Some(&user)).await;
    let phone = start(&w.two, Some(&user)).await;
    let other = start(&w.two, Some(&format!("{user}-bob"))).await;
    let listed = w.one.sessions_of(&user).await.expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|s| s.label.as_deref() == Some(&*format!("device of {user}"))));
    assert!(listed.iter().all(|s| !s.current));
    let s = w.two.begin(header(&laptop));
    let mine = s.sessions().await.expect("list");
    let laptop_handle = mine
        .iter()
        .find(|s| s.current)
        .expect("current")
        .handle
        .clone();
    assert_eq!(mine.iter().filter(|s| s.current).count(), 1);
    // A handle is no id, and stays across a renewal.
    for p in [&laptop, &phone] {
        let id = id_of(p);
        let hex: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            listed
                .iter()
                .all(|s| !s.handle.contains(&hex)
                    && s.handle != URL_SAFE_NO_PAD.encode(id.as_bytes()))
        );
    }
    w.clock.advance(RENEW_EVERY);
    let (_, cookie) = read_and_finish(w.one.clone(), laptop.clone()).await;
    let laptop = pair(&cookie.expect("finish").expect("renewed"));
    let again = w.one.sessions_of(&user).await.expect("list");
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.iter().any(|s| s.handle == laptop_handle));
    // Revoke the phone by handle; another user's handle is refused.
    let phone_handle = again
        .iter()
        .find(|s| s.handle != laptop_handle)
        .expect("phone")
        .handle
        .clone();
    assert!(!w
        .one
        .revoke(&format!("{user}-bob"), &phone_handle)
        .await
        .expect("revoke"));
    assert!(w.one.revoke(&user, &phone_handle).await.expect("revoke"));
    assert_eq!(peek(&w.two, &phone).await.0, None);
    assert_eq!(w.one.sessions_of(&user).await.expect("list").len(), 1);
    // Log out my other devices.
    let tablet = start(&w.two, Some(&user)).await;
    let s = w.two.begin(header(&laptop));
    assert_eq!(s.revoke_others().await.expect("others"), 1);
    assert_eq!(peek(&w.two, &tablet).await.0, None);
    assert_eq!(peek(&w.two, &laptop).await.0, Some(1));
    // Log out everywhere.
    let desktop = start(&w.two, Some(&user)).await;
    assert_eq!(w.one.revoke_all(&user).await.expect("all"), 2);
    dead(&w, &[&laptop, &desktop, &tablet, &phone]).await;
    assert!(w.one.sessions_of(&user).await.expect("list").is_empty());
    assert_eq!(
        peek(&w.two, &other).await.0,
        Some(1),
        "another user's session stays"
    );
    // Expired sessions drop out without any cleanup job.
    let u2 = format!("{user}-eve");
    start(&w.two, Some(&u2)).await;
    assert_eq!(w.one.sessions_of(&u2).await.expect("list").len(), 1);
    w.clock.advance(Duration::from_secs(601));
    assert!(w.one.sessions_of(&u2).await.expect("list").is_empty());
}

pub async fn revoke_all_racing_a_renewal_leaves_nothing(store: Arc<dyn SessionStore>) {
    for revoke_first in [false, true] {
        let w = World::new(store.clone());
        let user = format!(
            "u-{}",
            URL_SAFE_NO_PAD.encode(id_of(&start(&w.two, None).await).as_bytes())
        );
        let p0 = start(&w.two, Some(&user)).await;
        w.clock.advance(RENEW_EVERY);
        if revoke_first {
            // revoke_all has emptied the index and waits before deleting the session.
            let mut pause = w.store.pause(Op::Delete, &key_of(&p0));
            let one = w.one.clone();
            let u = user.clone();
            let revoke = tokio::spawn(async move { one.revoke_all(&u).await });
            pause.reached().await;
            let (_, cookie) = read_and_finish(w.one.clone(), p0.clone()).await;
            // The renewal found its entry gone: revoked, so no new id.
            let cookie = cookie.expect("finish");
            assert!(
                cookie.as_deref().is_none_or(|c| c.contains("Max-Age=0")),
                "{cookie:?}"
            );
            pause.release();
            assert_eq!(revoke.await.expect("task").expect("revoke"), 1);
        } else {
            // The renewal has listed and created its new key and waits to move the old one.
            let mut pause = w.store.pause(Op::Save, &key_of(&p0));
            let renew = tokio::spawn(read_and_finish(w.one.clone(), p0.clone()));
            pause.reached().await;
            assert_eq!(w.two.revoke_all(&user).await.expect("revoke"), 1);
            pause.release();
            let _ = renew.await.expect("task");
        }
        dead(&w, &[&p0]).await;
        let created = w.store.created.lock().expect("created").clone();
        for key in created {
            if let Some(r) = w.store.inner.load(&key).await.expect("load") {
                assert!(
                    // (The user's index record carries the user too, but no handle.)
                    r.moved.is_some() || r.user.as_deref() != Some(&*user) || r.handle.is_none(),
                    "revoke_first={revoke_first}: a revoked session lives on"
                );
            }
        }
        assert!(w.one.sessions_of(&user).await.expect("list").is_empty());
    }
}
