//! [`Config`], its builder, and the validation errors it reports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use crate::clock::{Clock, SystemClock};
use crate::cookie::CookieAttributes;
pub use crate::cookie::SameSite;
pub use crate::record::Timeout;
use crate::store::memory::MemoryStore;
use crate::store::SessionStore;

/// Shortest secret or encrypt key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;
/// The default cookie name, as in the original vishnu.
pub const DEFAULT_COOKIE_NAME: &str = "vishnu";
/// The default cookie path.
pub const DEFAULT_PATH: &str = "/";
/// How long the server keeps a browser-session (no timeout) record after its
/// last use, unless configured otherwise: one day, the original's `dormant_for`.
pub const DEFAULT_BROWSER_SESSION_TTL: Duration = Duration::from_secs(86_400);
/// The default grace window of [`ConfigBuilder::cycle_grace`] and [`ConfigBuilder::renew_grace`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The default of [`ConfigBuilder::save_deadline`].
pub const DEFAULT_SAVE_DEADLINE: Duration = Duration::from_secs(5);
/// Longest grace window accepted.
const MAX_GRACE: Duration = Duration::from_secs(3600);

/// A configuration value that was rejected by [`ConfigBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `secret` was not set.
    #[error("secret: required")]
    MissingSecret,
    /// `secret` or a fallback secret is too short.
    #[error("{option}: must be at least {MIN_KEY_LEN} bytes, got {len}")]
    KeyTooShort {
        /// The option's name.
        option: &'static str,
        /// The length that was given.
        len: usize,
    },
    /// `store` was not set.
    #[error("store: required (for example vishnu::MemoryStore::new())")]
    MissingStore,
    /// The cookie name is not an RFC 6265 token.
    #[error(
        "cookie_name: {0:?} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)"
    )]
    InvalidCookieName(String),
    /// A `__Host-` or `__Secure-` name whose requirements are not met.
    #[error("cookie_name: {0}")]
    PrefixRequirements(&'static str),
    /// Partitioned without Secure.
    #[error("partitioned: requires secure(true)")]
    PartitionedRequiresSecure,
    /// SameSite=None without Secure.
    #[error("same_site: None requires secure(true)")]
    SameSiteNoneRequiresSecure,
    /// The domain contains characters not allowed in a cookie attribute.
    #[error("domain: {0:?} is not a valid cookie domain")]
    InvalidDomain(String),
    /// The path does not start with `/` or contains forbidden characters.
    #[error("path: {0:?} must start with '/' and contain no ';' or control characters")]
    InvalidPath(String),
    /// A grace window longer than an hour.
    #[error("{option}: at most 3600 seconds, got {value:?}")]
    GraceTooLong {
        /// The option's name.
        option: &'static str,
        /// The value that was given.
        value: Duration,
    },
    /// A timeout that is zero or not a whole number of seconds.
    #[error("{option}: must be a whole number of seconds, at least 1, got {value:?}")]
    InvalidTimeout {
        /// The option's name.
        option: &'static str,
        /// The value that was given.
        value: Duration,
    },
}

/// Everything a session layer needs: secrets, cookie attributes, timeouts and the store.
///
/// Cheap to clone (an `Arc` inside). Build one with [`Config::builder`].
#[derive(Clone)]
pub struct Config {
    pub(crate) inner: Arc<Settings>,
}

pub(crate) struct Settings {
    /// The secrets: `[0]` signs, all verify.
    pub(crate) secrets: Vec<Vec<u8>>,
    /// The encryption keys: `[0]` seals, all open (empty: signed only).
    pub(crate) encrypt_keys: Vec<Vec<u8>>,
    pub(crate) cookie: CookieAttributes,
    pub(crate) auto_save: bool,
    pub(crate) timeout: Timeout,
    pub(crate) absolute_timeout: Option<Duration>,
    pub(crate) browser_session_ttl: Duration,
    pub(crate) cycle_grace: Duration,
    pub(crate) renew_every: Option<Duration>,
    pub(crate) renew_grace: Duration,
    pub(crate) save_deadline: Duration,
    /// The store the engine runs with: private, so that the engine reaches
    /// it only through its `Persistence` (no store calls in cookie mode).
    store: Arc<dyn SessionStore>,
    /// The same store when it is a [`MemoryStore`], which the engine calls
    /// directly (see `store::metered`).
    pub(crate) memory: Option<MemoryStore>,
    /// The clock the engine runs with.
    pub(crate) clock: Arc<dyn Clock>,
    /// `clock` is the [`SystemClock`] (no [`ConfigBuilder::clock`]).
    pub(crate) system_clock: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner;
        f.debug_struct("Config")
            .field("secret", &"<redacted>")
            .field("encrypted", &!c.encrypt_keys.is_empty())
            .field("cookie", &c.cookie)
            .field("auto_save", &c.auto_save)
            .field("timeout", &c.timeout)
            .field("absolute_timeout", &c.absolute_timeout)
            .field("cycle_grace", &c.cycle_grace)
            .field("renew_every", &c.renew_every)
            .field("renew_grace", &c.renew_grace)
            .field("save_deadline", &c.save_deadline)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Starts a builder with the defaults of the table in the README.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The cookie name.
    pub fn cookie_name(&self) -> &str {
        &self.inner.cookie.name
    }
    /// Whether the cookie is marked Secure.
    pub fn secure(&self) -> bool {
        self.inner.cookie.secure
    }
    /// Whether the cookie is marked HttpOnly.
    pub fn http_only(&self) -> bool {
        self.inner.cookie.http_only
    }
    /// The cookie's SameSite attribute.
    pub fn same_site(&self) -> SameSite {
        self.inner.cookie.same_site
    }
    /// The cookie's Domain attribute, if any.
    pub fn domain(&self) -> Option<&str> {
        self.inner.cookie.domain.as_deref()
    }
    /// The cookie's Path attribute.
    pub fn path(&self) -> &str {
        &self.inner.cookie.path
    }
    /// Whether the cookie is marked `Partitioned` (CHIPS).
    pub fn partitioned(&self) -> bool {
        self.inner.cookie.partitioned
    }
    /// Whether changes are saved at the end of a request without an explicit `save()`.
    pub fn auto_save(&self) -> bool {
        self.inner.auto_save
    }
    /// The default timeout of new sessions.
    pub fn timeout(&self) -> Timeout {
        self.inner.timeout
    }
    /// The hard cap on a session's life from its creation, if any.
    pub fn absolute_timeout(&self) -> Option<Duration> {
        self.inner.absolute_timeout
    }
    /// How long a cycled-away id is answered with no cookie (and `Superseded` on writes).
    pub fn cycle_grace(&self) -> Duration {
        self.inner.cycle_grace
    }
    /// How often a used session gets a new id, if at all.
    pub fn renew_every(&self) -> Option<Duration> {
        self.inner.renew_every
    }
    /// How long a renewed-away id is still served the session (and given the new id).
    pub fn renew_grace(&self) -> Duration {
        self.inner.renew_grace
    }
    /// The longest one save may take before it fails with `TooManyConflicts`.
    pub fn save_deadline(&self) -> Duration {
        self.inner.save_deadline
    }
    /// Whether cookie values are encrypted.
    pub fn encrypted(&self) -> bool {
        !self.inner.encrypt_keys.is_empty()
    }
    /// The store that holds the sessions.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }
}

/// Builds a [`Config`], validating every option at [`build`](ConfigBuilder::build) time.
#[must_use]
pub struct ConfigBuilder {
    secret: Option<Vec<u8>>,
    fallback_secrets: Vec<Vec<u8>>,
    cookie_name: String,
    encrypt_key: Option<Vec<u8>>,
    fallback_encrypt_keys: Vec<Vec<u8>>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    domain: Option<String>,
    path: String,
    partitioned: bool,
    auto_save: bool,
    timeout: Option<Duration>,
    absolute_timeout: Option<Duration>,
    browser_session_ttl: Duration,
    cycle_grace: Duration,
    renew_every: Option<Duration>,
    renew_grace: Duration,
    save_deadline: Duration,
    store: Option<Arc<dyn SessionStore>>,
    memory: Option<MemoryStore>,
    clock: Arc<dyn Clock>,
    system_clock: bool,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self {
            secret: None,
            fallback_secrets: Vec::new(),
            cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
            encrypt_key: None,
            fallback_encrypt_keys: Vec::new(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            domain: None,
            path: DEFAULT_PATH.to_owned(),
            partitioned: false,
            auto_save: false,
            timeout: None,
            absolute_timeout: None,
            browser_session_ttl: DEFAULT_BROWSER_SESSION_TTL,
            cycle_grace: DEFAULT_GRACE,
            renew_every: None,
            renew_grace: DEFAULT_GRACE,
            save_deadline: DEFAULT_SAVE_DEADLINE,
            store: None,
            memory: None,
            clock: Arc::new(SystemClock),
            system_clock: true,
        }
    }
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigBuilder")
            .field("cookie_name", &self.cookie_name)
            .finish_non_exhaustive()
    }
}

impl ConfigBuilder {
    /// The secret that signs cookies (required, at least 32 bytes of high entropy).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }
    /// An older secret still accepted when reading; cookies verified with it are
    /// re-issued under the current secret. Call once per old secret.
    pub fn fallback_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.fallback_secrets.push(secret.as_ref().to_vec());
        self
    }
    /// The secret derived from a web framework's secret key of any length
    /// (see [`codec::framework_secret`](crate::codec::framework_secret)), as
    /// vishnu's Flask, Django and Starlette fronts derive it: a Rust service
    /// given the same key, store and cookie name shares their sessions. An
    /// empty key fails [`build`](ConfigBuilder::build) as too short.
    pub fn framework_secret(self, key: impl AsRef<[u8]>) -> Self {
        let derived = crate::codec::framework_secret(key.as_ref());
        self.secret(derived.map(Vec::from).unwrap_or_default())
    }
    /// An older framework secret key still accepted, derived as for
    /// [`framework_secret`](ConfigBuilder::framework_secret) (Django's
    /// `SECRET_KEY_FALLBACKS`, Flask's `SECRET_KEY_FALLBACKS`).
    pub fn framework_fallback_secret(self, key: impl AsRef<[u8]>) -> Self {
        let derived = crate::codec::framework_secret(key.as_ref());
        self.fallback_secret(derived.map(Vec::from).unwrap_or_default())
    }
    /// The cookie name (default `vishnu`). `__Host-` names require secure, path
    /// `/` and no domain; `__Secure-` names require secure.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }
    /// Encrypts cookie values with AES-256-GCM-SIV under a key derived from this one (at least 32 bytes).
    pub fn encrypt_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.encrypt_key = Some(key.as_ref().to_vec());
        self
    }
    /// An older encrypt key still accepted when reading. Call once per old key.
    pub fn fallback_encrypt_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.fallback_encrypt_keys.push(key.as_ref().to_vec());
        self
    }
    /// The Secure attribute (default true: the cookie is sent over HTTPS only).
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }
    /// The HttpOnly attribute (default true: scripts cannot read the cookie).
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }
    /// The SameSite attribute (default Lax). `None` requires secure.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }
    /// The Domain attribute (default none: the cookie is host-only).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }
    /// The Path attribute (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
    /// Marks the cookie `Partitioned` (CHIPS), the removal cookie too, so
    /// that a site embedded in others (an iframe) keeps one session per
    /// top-level site where browsers block third-party cookies. Requires
    /// `secure(true)`, else [`ConfigError::PartitionedRequiresSecure`]. Default false.
    pub fn partitioned(mut self, partitioned: bool) -> Self {
        self.partitioned = partitioned;
        self
    }
    /// Save changes at the end of every request without an explicit `save()` (default false).
    pub fn auto_save(mut self, auto_save: bool) -> Self {
        self.auto_save = auto_save;
        self
    }
    /// Idle timeout (whole seconds): activity slides the expiry, and the cookie
    /// carries Max-Age and Expires. Without it sessions are browser-session cookies.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// A hard cap on a session's life from its creation that activity never extends.
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = Some(timeout);
        self
    }
    /// How long the server keeps a browser-session record after its last use (default one day).
    pub fn browser_session_ttl(mut self, ttl: Duration) -> Self {
        self.browser_session_ttl = ttl;
        self
    }
    /// After [`Session::cycle_id`](crate::Session::cycle_id), how long a
    /// request that still carries the old id gets no `Set-Cookie` of ours at
    /// all (neither a removal nor a new id) and has its writes refused with
    /// [`SessionError::Superseded`](crate::SessionError::Superseded), instead
    /// of being treated as a visitor without a session. Requests that were in
    /// flight during a login then cannot log the user out again. The old id
    /// never reads or writes the session, grace or not. Default 10 s; at most an hour.
    pub fn cycle_grace(mut self, grace: Duration) -> Self {
        self.cycle_grace = grace;
        self
    }
    /// Gives a session that is used a new id at most once per `every` (whole
    /// seconds), keeping its data and its user, so that a stolen id stops
    /// working soon. Off by default.
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renew_every = Some(every);
        self
    }
    /// After a renewal, how long a request with the old id is still served
    /// the same session and sent the new id (the same one every time, so that
    /// tabs converge). Past it the old id is dead. Default 10 s; at most an hour.
    pub fn renew_grace(mut self, grace: Duration) -> Self {
        self.renew_grace = grace;
        self
    }
    /// The longest one save may take, waiting for its turn and retrying after
    /// version conflicts included; past it the save fails with
    /// [`SessionError::TooManyConflicts`](crate::SessionError::TooManyConflicts)
    /// instead of holding the request. Default 5 s; more than zero, at most an hour.
    pub fn save_deadline(mut self, deadline: Duration) -> Self {
        self.save_deadline = deadline;
        self
    }
    /// The store that holds session records (required).
    ///
    /// A [`MemoryStore`] given here is called directly: a request shares
    /// the record the store holds instead of copying it, and a save hands
    /// the store the record it wrote.
    pub fn store(mut self, store: impl SessionStore) -> Self {
        let any: &dyn std::any::Any = &store;
        self.memory = any.downcast_ref::<MemoryStore>().cloned();
        self.store = Some(Arc::new(store));
        self
    }
    /// The store, already shared (for example with a cleanup task). It is
    /// called through [`SessionStore`] whatever it is: give a
    /// [`MemoryStore`] to [`store`](Self::store) (it is cheap to clone, and
    /// clones share their records) to have it called directly.
    pub fn shared_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.memory = None;
        self.store = Some(store);
        self
    }
    /// Replaces the time source (tests use this to move time forward).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.system_clock = false;
        self
    }

    /// Validates every option and builds the [`Config`].
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the option at fault.
    pub fn build(self) -> Result<Config, ConfigError> {
        let secret = self.secret.ok_or(ConfigError::MissingSecret)?;
        check_key("secret", &secret)?;
        for s in &self.fallback_secrets {
            check_key("fallback_secret", s)?;
        }
        if let Some(k) = &self.encrypt_key {
            check_key("encrypt_key", k)?;
        }
        for k in &self.fallback_encrypt_keys {
            check_key("fallback_encrypt_key", k)?;
        }
        if self.encrypt_key.is_none() && !self.fallback_encrypt_keys.is_empty() {
            return Err(ConfigError::KeyTooShort {
                option: "encrypt_key",
                len: 0,
            });
        }
        if !is_token(&self.cookie_name) {
            return Err(ConfigError::InvalidCookieName(self.cookie_name));
        }
        if let Some(d) = &self.domain {
            if d.is_empty()
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                return Err(ConfigError::InvalidDomain(d.clone()));
            }
        }
        if !self.path.starts_with('/')
            || self
                .path
                .bytes()
                .any(|b| b == b';' || b.is_ascii_control() || !b.is_ascii())
        {
            return Err(ConfigError::InvalidPath(self.path));
        }
        if has_prefix(&self.cookie_name, "__Host-") {
            if !self.secure {
                return Err(ConfigError::PrefixRequirements(
                    "a __Host- name requires secure(true)",
                ));
            }
            if self.path != "/" {
                return Err(ConfigError::PrefixRequirements(
                    "a __Host- name requires path \"/\"",
                ));
            }
            if self.domain.is_some() {
                return Err(ConfigError::PrefixRequirements(
                    "a __Host- name must not set a domain",
                ));
            }
        }
        if has_prefix(&self.cookie_name, "__Secure-") && !self.secure {
            return Err(ConfigError::PrefixRequirements(
                "a __Secure- name requires secure(true)",
            ));
        }
        if self.partitioned && !self.secure {
            return Err(ConfigError::PartitionedRequiresSecure);
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneRequiresSecure);
        }
        let timeout = match self.timeout {
            None => Timeout::BrowserSession,
            Some(d) => Timeout::Seconds(whole_seconds("timeout", d)?),
        };
        if let Some(d) = self.absolute_timeout {
            whole_seconds("absolute_timeout", d)?;
        }
        whole_seconds("browser_session_ttl", self.browser_session_ttl)?;
        if let Some(d) = self.renew_every {
            whole_seconds("renew_every", d)?;
        }
        for (option, value) in [
            ("cycle_grace", self.cycle_grace),
            ("renew_grace", self.renew_grace),
            ("save_deadline", self.save_deadline),
        ] {
            if value > MAX_GRACE {
                return Err(ConfigError::GraceTooLong { option, value });
            }
        }
        if self.save_deadline.is_zero() {
            return Err(ConfigError::InvalidTimeout {
                option: "save_deadline",
                value: self.save_deadline,
            });
        }
        let store = self.store.ok_or(ConfigError::MissingStore)?;

        let mut secrets = vec![secret];
        secrets.extend(self.fallback_secrets);
        let mut encrypt_keys: Vec<Vec<u8>> = self.encrypt_key.into_iter().collect();
        encrypt_keys.extend(self.fallback_encrypt_keys);
        if store.client_side() && encrypt_keys.is_empty() {
            // A cookie store always encrypts: without an encrypt key, the
            // encryption key is derived from the secret (HKDF, its own label).
            encrypt_keys.clone_from(&secrets);
        }

        Ok(Config {
            inner: Arc::new(Settings {
                secrets,
                encrypt_keys,
                cookie: CookieAttributes {
                    name: self.cookie_name,
                    secure: self.secure,
                    http_only: self.http_only,
                    same_site: self.same_site,
                    domain: self.domain,
                    path: self.path,
                    partitioned: self.partitioned,
                },
                auto_save: self.auto_save,
                timeout,
                absolute_timeout: self.absolute_timeout,
                browser_session_ttl: self.browser_session_ttl,
                cycle_grace: self.cycle_grace,
                renew_every: self.renew_every,
                renew_grace: self.renew_grace,
                save_deadline: self.save_deadline,
                store,
                memory: self.memory,
                clock: self.clock,
                system_clock: self.system_clock,
            }),
        })
    }
}

fn check_key(option: &'static str, key: &[u8]) -> Result<(), ConfigError> {
    if key.len() < MIN_KEY_LEN {
        return Err(ConfigError::KeyTooShort {
            option,
            len: key.len(),
        });
    }
    Ok(())
}

fn whole_seconds(option: &'static str, d: Duration) -> Result<u64, ConfigError> {
    if d.as_secs() == 0 || d.subsec_nanos() != 0 {
        return Err(ConfigError::InvalidTimeout { option, value: d });
    }
    Ok(d.as_secs())
}

fn has_prefix(name: &str, prefix: &str) -> bool {
    // Browsers match the prefixes case-insensitively (RFC 6265bis).
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// RFC 6265 `cookie-name` = RFC 7230 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
