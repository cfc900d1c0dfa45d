//! A new configuration while the node runs: checked whole (as at start), stored as a new
//! version, then put in force by one swap. A request reads the configuration once, when it
//! starts ([`SNAPSHOT`]), and finishes under it; a payment keeps the station, amounts and
//! deadline it was activated with (the engine holds them). Nodes sharing a store adopt the
//! versions the others store ([`follow_store`]).

use std::sync::Arc;
use std::time::Duration;

use super::Node;
use crate::config::{Config, ConfigError};
use crate::engine::Millis;
use crate::journal::rows;
use crate::reconfig;
use crate::registry::Registry;
use crate::store::{ConfigVersion, StoreError};

tokio::task_local! {
    /// The configuration the request being served runs under, from its start to its answer.
    pub(super) static SNAPSHOT: Arc<Registry>;
}

/// The running configuration's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveVersion {
    /// 1, 2, … (0: not stored, for a node run without [`Node::settle_config`]).
    pub version: u64,
    pub applied_at: Millis,
    /// The admin token's id, `sighup` or `file`.
    pub applied_by: String,
    /// The shared hash of the configuration file last read ([`reconfig::shared_hash`]).
    pub file_hash: String,
}

impl ActiveVersion {
    pub(super) fn unversioned(config: &Config) -> ActiveVersion {
        ActiveVersion {
            version: 0,
            applied_at: 0,
            applied_by: "file".into(),
            file_hash: reconfig::shared_hash(config),
        }
    }
}

/// Why a configuration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Invalid, or changing a key read at start only: nothing changed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the configuration could not be stored, nothing changed: {0}")]
    Store(#[from] StoreError),
    #[error("the node was started without a configuration file")]
    NoFile,
    /// A merge patch that cannot be applied (not an object, or no TOML once applied).
    #[error(transparent)]
    Patch(reconfig::PatchError),
}

impl From<reconfig::PatchError> for ApplyError {
    fn from(e: reconfig::PatchError) -> ApplyError {
        match e {
            reconfig::PatchError::Config(c) => ApplyError::Config(c),
            other => ApplyError::Patch(other),
        }
    }
}

/// A configuration applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The version in force.
    pub version: u64,
    /// What changed ([`reconfig::diff`]); empty: nothing, and no new version was stored.
    pub diff: String,
}

/// Where a configuration applied at runtime comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file, read again: its hash is remembered (see [`Node::settle_config`]).
    File,
    /// A document sent to the admin API.
    Admin,
}

impl Node {
    /// The configuration in force now.
    pub(super) fn running(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The running configuration's version, who applied it and when.
    pub fn active_version(&self) -> ActiveVersion {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` under one snapshot of the configuration (a request, from start to answer).
    pub async fn with_snapshot<F: std::future::Future>(&self, f: F) -> F::Output {
        SNAPSHOT.scope(self.running(), f).await
    }

    /// Puts a checked configuration in force.
    fn install(&self, config: Config, active: ActiveVersion) {
        self.front.set_keys(&config);
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Registry::new(config));
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = active;
    }

    /// Applies `new` for `by`: checked whole against the running configuration (keys read at
    /// start only must keep their running values), stored as the next version, then put in
    /// force and journaled. Nothing changes if any step fails; an identical configuration
    /// stores no version.
    pub async fn apply_config(
        &self,
        new: Config,
        by: &str,
        origin: Origin,
    ) -> Result<Applied, ApplyError> {
        self.apply_with(|_| Ok(new), by, origin).await
    }

    /// Applies a JSON merge patch of the running configuration (see [`reconfig::patch`]) as
    /// [`Node::apply_config`] applies a document.
    pub async fn patch_config(
        &self,
        patch: &serde_json::Value,
        by: &str,
    ) -> Result<Applied, ApplyError> {
        self.apply_with(
            |running| Ok(reconfig::patch(running, patch)?),
            by,
            Origin::Admin,
        )
        .await
    }

    /// Applies the configuration `make` makes of the running one, one application at a time.
    async fn apply_with(
        &self,
        make: impl FnOnce(&Config) -> Result<Config, ApplyError>,
        by: &str,
        origin: Origin,
    ) -> Result<Applied, ApplyError> {
        let _one_at_a_time = self.applying.lock().await;
        let running = self.running();
        let new = reconfig::prepare(make(running.config())?, running.config());
        new.check()?;
        reconfig::check_runtime_change(running.config(), &new)?;
        let active = self.active_version();
        let diff = reconfig::diff(running.config(), &new);
        let file_hash = match origin {
            Origin::File => reconfig::shared_hash(&new),
            Origin::Admin => active.file_hash.clone(),
        };
        if diff.is_empty() {
            self.active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .file_hash = file_hash;
            return Ok(Applied {
                version: active.version,
                diff,
            });
        }
        let stored = self.store_version(&new, by, file_hash, &diff).await?;
        let version = stored.version;
        for w in new.warnings() {
            tracing::warn!("{w}");
        }
        self.install(new, stored);
        self.journal_version(version, by, &diff);
        Ok(Applied { version, diff })
    }

    /// Reads the configuration file again and applies it (SIGHUP, `/config/refresh`).
    pub async fn reload_file(&self, by: &str) -> Result<Applied, ApplyError> {
        let path = self.running().config().file.clone();
        let path = path.ok_or(ApplyError::NoFile)?;
        let file = path.display().to_string();
        let new = tokio::task::spawn_blocking(move || Config::from_file(&path))
            .await
            .map_err(|e| ConfigError {
                key: file,
                message: format!("cannot read: {e}"),
                line: None,
            })??;
        self.apply_config(new, by, Origin::File).await
    }

    /// Adopts the last stored version if it is newer than the running one (another node
    /// stored it). Returns the version adopted.
    pub async fn adopt_stored(&self) -> Result<Option<u64>, ApplyError> {
        let _one_at_a_time = self.applying.lock().await;
        let Some(v) = self.store.latest_config().await? else {
            return Ok(None);
        };
        if v.version <= self.active_version().version {
            return Ok(None);
        }
        let config = reconfig::adopt(&v.toml, self.running().config())?;
        tracing::info!(version = v.version, by = %v.applied_by, "configuration version adopted from the store");
        self.install(
            config,
            ActiveVersion {
                version: v.version,
                applied_at: v.applied_at,
                applied_by: v.applied_by,
                file_hash: v.file_hash,
            },
        );
        Ok(Some(v.version))
    }

    /// At start, before serving: the last stored version is put in force while the
    /// configuration the node was started with (its file) is the one that version was applied
    /// with (same [`reconfig::shared_hash`]); otherwise the file's configuration wins and is
    /// stored as a new version (`file`). Keys read at start only always come from the file.
    pub async fn settle_config(&self) -> Result<(), ApplyError> {
        let file = self.running();
        let hash = reconfig::shared_hash(file.config());
        let stored = self.store.latest_config().await?;
        let previous = match &stored {
            Some(v) => match reconfig::adopt(&v.toml, file.config()) {
                Ok(c) => Some((v, c)),
                Err(e) => {
                    tracing::warn!(version = v.version, error = %e, "the stored configuration cannot be used: the file's is applied");
                    None
                }
            },
            None => None,
        };
        if let Some((v, config)) = previous.as_ref().filter(|(v, _)| v.file_hash == hash) {
            tracing::info!(version = v.version, by = %v.applied_by, "running the stored configuration (the file is unchanged since it was applied)");
            self.install(
                config.clone(),
                ActiveVersion {
                    version: v.version,
                    applied_at: v.applied_at,
                    applied_by: v.applied_by.clone(),
                    file_hash: hash,
                },
            );
            return Ok(());
        }
        let diff = match &previous {
            Some((_, before)) => reconfig::diff(before, file.config()),
            None => "initial configuration".into(),
        };
        let stored = self
            .store_version(file.config(), "file", hash, &diff)
            .await?;
        let version = stored.version;
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = stored;
        self.journal_version(version, "file", &diff);
        Ok(())
    }

    /// Stores `config` as the next version, applied now by `by`, and returns that version.
    async fn store_version(
        &self,
        config: &Config,
        by: &str,
        file_hash: String,
        diff: &str,
    ) -> Result<ActiveVersion, ApplyError> {
        let applied_at = self.now();
        let version = self
            .store
            .save_config(ConfigVersion {
                version: 0,
                applied_at,
                applied_by: by.into(),
                toml: reconfig::canonical(config),
                file_hash: file_hash.clone(),
                diff: diff.into(),
            })
            .await?;
        Ok(ActiveVersion {
            version,
            applied_at,
            applied_by: by.into(),
            file_hash,
        })
    }

    /// Logs and journals a version applied.
    fn journal_version(&self, version: u64, by: &str, diff: &str) {
        tracing::info!(
            version,
            by,
            changes = diff.lines().count(),
            "configuration applied"
        );
        if self.registry().config().journal.enabled {
            self.store
                .journal(rows::config_applied(self.now(), version, by, diff));
        }
    }
}

/// How often a node sharing its store looks for a new configuration version.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Adopts, within [`FOLLOW_EVERY`], each configuration version another node on the shared
/// store applies. A version this node cannot take is logged once and skipped.
pub async fn follow_store(node: Arc<Node>) {
    let mut refused = 0;
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let latest = match node.store.latest_config_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the configuration version");
                continue;
            }
        };
        if latest <= node.active_version().version || latest == refused {
            continue;
        }
        if let Err(e) = node.adopt_stored().await {
            tracing::error!(version = latest, error = %e, "a stored configuration version is not adopted: this node keeps its own");
            refused = latest;
        }
    }
}

/// Reads the configuration file again at each SIGHUP.
#[cfg(unix)]
pub async fn reload_on_hangup(node: Arc<Node>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            "SIGHUP cannot be listened for: the configuration is reloaded only through the admin API"
        );
        return;
    };
    while hangups.recv().await.is_some() {
        match node.reload_file("sighup").await {
            Ok(a) => tracing::info!(
                version = a.version,
                changed = !a.diff.is_empty(),
                "SIGHUP: configuration file read again"
            ),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: configuration refused, the running one is kept")
            }
        }
    }
}
