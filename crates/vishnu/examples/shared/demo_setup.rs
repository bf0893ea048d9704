//! What the two demos share (`demo.rs` on axum, `demo_actix.rs` on actix-web):
//! their flags, their configuration, the page and the JSON of a user's
//! sessions. Each demo includes it with `#[path = "shared/demo_setup.rs"] mod setup;`.

use std::path::PathBuf;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use vishnu::{Config, SameSite, SessionInfo};

/// The flags both demos take.
pub const FLAGS: &str = "[--port N] [--store URL] [--timeout SECONDS] \
[--tls-cert FILE --tls-key FILE] [--cookie-name NAME] [--same-site strict|lax|none] \
[--renew-every SECONDS] [--grace SECONDS] [--partitioned]";

/// The parsed flags.
pub struct Args {
    pub port: u16,
    pub store: String,
    pub timeout: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub cookie_name: Option<String>,
    pub same_site: Option<SameSite>,
    pub renew_every: Option<u64>,
    pub grace: Option<u64>,
    pub partitioned: bool,
}

fn seconds(flag: &str, v: &str) -> Result<u64, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a number of seconds"))
}

/// The demos' command line; `program` names the demo in `--help`.
fn parse_args(program: &str) -> Result<Args, String> {
    let mut args = Args {
        port: 3000,
        store: "memory".into(),
        timeout: None,
        tls_cert: None,
        tls_key: None,
        cookie_name: None,
        same_site: None,
        renew_every: None,
        grace: None,
        partitioned: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v
                    .parse()
                    .map_err(|_| format!("--port: {v:?} is not a port number"))?;
            }
            "--store" => args.store = value("--store")?,
            "--timeout" => args.timeout = Some(seconds("--timeout", &value("--timeout")?)?),
            "--renew-every" => {
                args.renew_every = Some(seconds("--renew-every", &value("--renew-every")?)?)
            }
            "--grace" => args.grace = Some(seconds("--grace", &value("--grace")?)?),
            "--partitioned" => args.partitioned = true,
            "--tls-cert" => args.tls_cert = Some(value("--tls-cert")?.into()),
            "--tls-key" => args.tls_key = Some(value("--tls-key")?.into()),
            "--cookie-name" => args.cookie_name = Some(value("--cookie-name")?),
            "--same-site" => {
                let v = value("--same-site")?;
                args.same_site = Some(match v.to_ascii_lowercase().as_str() {
                    "strict" => SameSite::Strict,
                    "lax" => SameSite::Lax,
                    "none" => SameSite::None,
                    _ => return Err(format!("--same-site: {v:?} is not strict, lax or none")),
                });
            }
            "-h" | "--help" => {
                println!(
                    "usage: {program} {FLAGS}\n  --store: {} (default memory)\n  \
                     --tls-cert, --tls-key: PEM certificate chain and private key; serve HTTPS \
                     with a Secure cookie (default: plain HTTP, cookie not Secure)\n  \
                     --cookie-name: default {}\n  --same-site: default lax\n  \
                     --renew-every: give a used session a new id at most this often (default off)\n  \
                     --grace: the cycle and renewal grace windows (default 10)\n  \
                     --partitioned: a Partitioned (CHIPS) cookie; needs HTTPS",
                    vishnu::store::supported().join(", "),
                    vishnu::DEFAULT_COOKIE_NAME,
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(args)
}

/// What a demo starts with: its flags, its configuration, and the metrics handle.
pub struct Started {
    pub args: Args,
    pub config: Config,
    pub metrics: PrometheusHandle,
}

/// Everything before the routes: logging to stderr, the flags, the store and
/// configuration, the metrics recorder. Prints `{program}: {error}` and exits
/// (2 for bad flags or configuration, 1 otherwise) when one fails.
pub async fn start(program: &str) -> Started {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,vishnu=info".into()),
        )
        .init();
    fn fail(program: &str, code: i32, message: String) -> ! {
        eprintln!("{program}: {message}");
        std::process::exit(code)
    }
    let args = parse_args(program).unwrap_or_else(|e| fail(program, 2, e));
    let config = config(&args).await.unwrap_or_else(|e| fail(program, 2, e));
    // The metrics of every session (see vishnu's `metrics` feature), for GET /metrics.
    let metrics = metrics().unwrap_or_else(|e| fail(program, 1, e));
    Started {
        args,
        config,
        metrics,
    }
}

/// Opens the store and builds the configuration the flags ask for. The
/// error is the message to print (exit code 2).
async fn config(args: &Args) -> Result<Config, String> {
    let store = vishnu::store::open(&args.store)
        .await
        .map_err(|e| e.to_string())?;
    let builder = Config::builder();
    // VISHNU_FRAMEWORK_SECRET: a Flask/Django/Starlette SECRET_KEY, derived as
    // vishnu's framework fronts derive it, to share their sessions.
    let builder = match std::env::var("VISHNU_FRAMEWORK_SECRET") {
        Ok(key) => builder.framework_secret(key),
        Err(_) => builder.secret(
            std::env::var("VISHNU_SECRET")
                .unwrap_or_else(|_| "demo secret: change me, at least 32 bytes long".into()),
        ),
    };
    let mut builder = builder
        .shared_store(store)
        .auto_save(true)
        // Without TLS the demo serves plain http on localhost, where browsers
        // drop Secure cookies; the library default (secure = true) stays on for
        // real apps, and here whenever the demo serves HTTPS.
        .secure(args.tls_cert.is_some());
    if let Some(t) = args.timeout {
        builder = builder.timeout(Duration::from_secs(t));
    }
    if let Some(name) = &args.cookie_name {
        builder = builder.cookie_name(name.clone());
    }
    if let Some(same_site) = args.same_site {
        builder = builder.same_site(same_site);
    }
    if let Some(every) = args.renew_every {
        builder = builder.renew_every(Duration::from_secs(every));
    }
    if args.partitioned {
        builder = builder.partitioned(true);
    }
    if let Some(grace) = args.grace {
        builder = builder
            .cycle_grace(Duration::from_secs(grace))
            .renew_grace(Duration::from_secs(grace));
    }
    builder.build().map_err(|e| format!("configuration: {e}"))
}

/// Installs the Prometheus recorder for every session metric (vishnu's
/// `metrics` feature); its handle renders `GET /metrics`.
fn metrics() -> Result<PrometheusHandle, String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page of `GET /`.
pub fn page(visits: u64, user: Option<&str>) -> String {
    let who = match user {
        Some(u) => format!("<p>Logged in as <b id=\"user\">{}</b></p>", escape(u)),
        None => "<p id=\"user\">Not logged in</p>".to_owned(),
    };
    format!(
        "<!doctype html><html><head><title>vishnu demo</title></head><body>\
         <h1>vishnu demo</h1><p>Visits: <span id=\"counter\">{visits}</span> \
         (<a href=\"/counter\">count one more</a>)</p>{who}\
         <form method=\"post\" action=\"/login\"><input name=\"user\" placeholder=\"user name\">\
         <button type=\"submit\">Log in</button></form>\
         <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Log out</button></form>\
         </body></html>"
    )
}

/// The JSON of `GET /sessions`: `handle`, `current`, `created_at`, `last_access` (ms), `label`.
pub fn sessions_json(list: Vec<SessionInfo>) -> serde_json::Value {
    list.into_iter()
        .map(|s| {
            serde_json::json!({
                "handle": s.handle,
                "current": s.current,
                "created_at": s.created_at,
                "last_access": s.last_access,
                "label": s.label,
            })
        })
        .collect()
}

/// A login's user name: 1 to 64 characters after trimming.
pub fn user_name(raw: &str) -> Option<&str> {
    let user = raw.trim();
    (!user.is_empty() && user.chars().count() <= 64).then_some(user)
}

/// A session label from the `User-Agent` header: at most 200 characters.
pub fn label(agent: Option<&str>) -> String {
    agent.unwrap_or("").chars().take(200).collect()
}
