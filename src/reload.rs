//! Hot reload of the config file: it is watched (edits in place, rename-replace as editors and
//! Kubernetes ConfigMaps do it, delete-then-create) and re-read on SIGHUP.
//!
//! A reload is: read and check the whole file (off the async threads) → keep what only a
//! restart can change → build the next [`Snapshot`] → apply what lives outside the snapshot
//! (history limits, connection limits and rates, the sources' relays) → store the snapshot →
//! close the streams whose rights it took away. A file that does not check is refused whole:
//! every error is logged as `file:line:col: message`, the config in force stays, and
//! `sse_gateway_config_reloads_total{result="error"}` counts it. Open streams and requests in
//! flight are never dropped: each request keeps the snapshot it started with, and each stream
//! the settings it opened with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::auth::{self, Action, TicketStore};
use crate::config::{self, Config};
use crate::hub::{ClientHandle, CloseReason, Hub};
use crate::limits::Limits;
use crate::metrics;
use crate::proxy::{self, Pools};
use crate::snapshot::{Snapshot, Snapshots};
use crate::source::Sources;
use crate::tls::Certificates;

/// Events on the file's directory within this window make one reload: an editor's save, or a
/// ConfigMap's swap of symlinks, is several events.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The operator sent SIGHUP: always re-read (key and secret files may have changed even if
    /// the config file did not).
    Signal,
    /// Something changed in the file's directory: re-read if the file's bytes changed.
    FileChanged,
}

/// Asks the reloader for a reload; requests that arrive while one is pending are one request.
#[derive(Clone)]
pub struct ReloadTrigger {
    tx: mpsc::Sender<Cause>,
}

/// The reloader's end of [`ReloadTrigger`]s, taken when it starts.
pub struct ReloadRequests(Mutex<Option<mpsc::Receiver<Cause>>>);

impl From<mpsc::Receiver<Cause>> for ReloadRequests {
    fn from(rx: mpsc::Receiver<Cause>) -> ReloadRequests {
        ReloadRequests(Mutex::new(Some(rx)))
    }
}

impl ReloadTrigger {
    pub fn new() -> (ReloadTrigger, mpsc::Receiver<Cause>) {
        // A few slots: a SIGHUP is not lost behind a pending file change.
        let (tx, rx) = mpsc::channel(4);
        (ReloadTrigger { tx }, rx)
    }

    pub fn request(&self, cause: Cause) {
        // Full: reloads are already pending, and the next one reads the file as it is then.
        let _ = self.tx.try_send(cause);
    }
}

/// Applies reloads for the life of the gateway (a pingora background service).
pub struct Reloader {
    pub snapshots: Arc<Snapshots>,
    /// Outlives every snapshot's authenticator.
    pub tickets: Arc<TicketStore>,
    pub hub: Arc<Hub>,
    pub limits: Arc<Limits>,
    pub sources: Arc<Sources>,
    /// The upstream pools: unchanged ones are kept, with their health.
    pub pools: Arc<Pools>,
    /// The HTTPS listener's certificate, when there is one: each reload stores the pair it read.
    pub certificates: Option<Arc<Certificates>>,
    pub requests: ReloadRequests,
    pub trigger: ReloadTrigger,
    /// The config file's bytes, read just before the config in force was loaded from it;
    /// taken when the reloader starts.
    pub read_from: Mutex<Option<Vec<u8>>>,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut requests) = self.requests.0.lock().take() else {
            return;
        };
        let path = self.snapshots.load().config.source.clone();
        // Kept alive as long as the loop runs: dropping it stops the watching.
        let _watcher = path
            .as_deref()
            .and_then(|path| watch(path, self.trigger.clone()));
        // The bytes the config in force came from. An edit made since then raised no event if
        // it came before the watching began: one look now catches it (the same bytes are not
        // reloaded).
        let mut last_read = self.read_from.lock().take();
        if path.is_some() {
            self.trigger.request(Cause::FileChanged);
        }
        loop {
            let cause = tokio::select! {
                cause = requests.recv() => cause,
                _ = shutdown.changed() => return,
            };
            let Some(cause) = cause else { return };
            let Some(path) = &path else {
                tracing::info!("running the embedded default configuration: nothing to reload");
                continue;
            };
            let bytes = tokio::fs::read(path).await.ok();
            if cause == Cause::FileChanged && bytes == last_read {
                continue;
            }
            last_read = bytes;
            self.reload(path, cause).await;
        }
    }
}

impl Reloader {
    async fn reload(&self, path: &Path, cause: Cause) {
        let current = self.snapshots.load();
        let owned = path.to_owned();
        // Reading the file, key files and JWT keys is blocking work.
        let loaded = tokio::task::spawn_blocking(move || config::load(&owned)).await;
        let config = match loaded {
            Ok(Ok(config)) => config,
            Ok(Err(errors)) => {
                for error in &errors.errors {
                    tracing::error!("{error}");
                }
                return refused(
                    path,
                    cause,
                    &format!("{} error(s) in the file", errors.errors.len()),
                );
            }
            Err(e) => return refused(path, cause, &e.to_string()),
        };
        let config = keep_restart_only(&current.config, config);
        let routes = match proxy::route_table(&config, &self.pools, Some(&current.routes)) {
            Ok(routes) => routes,
            Err(e) => return refused(path, cause, &e),
        };
        let next =
            match Snapshot::build(config, self.tickets.clone(), routes, current.generation + 1) {
                Ok(next) => next,
                Err(e) => return refused(path, cause, &e),
            };
        let config = next.config.clone();
        let generation = next.generation;
        self.hub.set_history_rules(next.history.clone());
        self.limits.reconfigure(&config.limits);
        if let (Some(certificates), Some(tls)) = (&self.certificates, &config.tls) {
            certificates.store(tls.pair.clone());
        }
        self.snapshots.store(next);
        let revoked = revoke(&self.hub, &config);
        self.sources.apply(&config).await;
        metrics::CONFIG_RELOADS.with_label_values(&["ok"]).inc();
        metrics::CONFIG_GENERATION.set(i64::try_from(generation).unwrap_or(i64::MAX));
        tracing::info!(
            file = %path.display(),
            ?cause,
            generation,
            streams_revoked = revoked,
            "configuration reloaded"
        );
    }
}

fn refused(path: &Path, cause: Cause, why: &str) {
    metrics::CONFIG_RELOADS.with_label_values(&["error"]).inc();
    tracing::error!(
        file = %path.display(),
        ?cause,
        "configuration reload refused, the configuration in force stays: {why}"
    );
}

/// `listen`, `tls.listen` and `broker` are what the process was built around: a change to them
/// is logged as needing a restart, and the values in force are kept (the certificate pair of a
/// kept HTTPS listener is the new file's).
fn keep_restart_only(current: &Config, mut next: Config) -> Config {
    if next.listen != current.listen {
        tracing::warn!(
            from = %current.listen,
            to = %next.listen,
            "listen changed: a new address needs a restart (or `sse-gateway --upgrade`); keeping the current one"
        );
        next.listen = current.listen;
    }
    match (&current.tls, &mut next.tls) {
        (Some(current), Some(next)) if next.listen != current.listen => {
            tracing::warn!(
                from = %current.listen,
                to = %next.listen,
                "tls.listen changed: a new address needs a restart; keeping the current one"
            );
            next.listen = current.listen;
        }
        (Some(_), None) => {
            tracing::warn!(
                "tls removed: closing the HTTPS listener needs a restart; it keeps serving with its certificate"
            );
            next.tls = current.tls.clone();
        }
        (None, Some(_)) => {
            tracing::warn!("tls added: a new HTTPS listener needs a restart; not listening yet");
            next.tls = None;
        }
        _ => {}
    }
    if next.broker != current.broker {
        tracing::warn!("broker changed: another broker needs a restart; keeping the current one");
        next.broker = current.broker.clone();
    }
    next
}

/// Closes the streams whose rights `config` no longer grants (a removed key, a channel whose
/// policy now wants more): they are told why in a last `access_revoked` event. Returns how many.
fn revoke(hub: &Hub, config: &Config) -> usize {
    let mut revoked = 0;
    for client in hub.clients().all() {
        if !still_allowed(config, &client) {
            client.close(CloseReason::Revoked);
            revoked += 1;
        }
    }
    revoked
}

fn still_allowed(config: &Config, client: &ClientHandle) -> bool {
    let who = client
        .principal
        .as_ref()
        .and_then(|p| p.under(&config.auth));
    auth::authorize_channels(config, who.as_ref(), Action::Subscribe, &client.channels).is_ok()
}

/// Watches the directory of `path` (files are replaced by renaming, and ConfigMaps swap a
/// symlink next to the file, so the file itself is not enough), asking for a reload after each
/// burst of events. `None` (logged) when the directory cannot be watched.
fn watch(
    path: &Path,
    trigger: ReloadTrigger,
) -> Option<
    notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
> {
    let dir: PathBuf = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let on_events = move |result: DebounceEventResult| {
        if let Ok(events) = result {
            if !events.is_empty() {
                trigger.request(Cause::FileChanged);
            }
        }
    };
    let started = new_debouncer(DEBOUNCE, None, on_events).and_then(|mut debouncer| {
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .map(|()| debouncer)
    });
    match started {
        Ok(debouncer) => Some(debouncer),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config file; reload with SIGHUP");
            None
        }
    }
}
