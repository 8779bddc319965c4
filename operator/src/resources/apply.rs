//! The only code that writes children: one generic server-side apply, delete-if-owned and
//! create-if-absent, all behind a cache that skips writes whose result is already in place.
//!
//! The cache remembers, per child, a fingerprint of what was last written and the
//! `resourceVersion` the API server returned. The controller's watches on children report every
//! `resourceVersion` they see ([`ChildCache::observe`]), so an edit or deletion by anyone else
//! makes the next reconcile write again. Entries expire after [`ChildCache::ttl`] as a backstop.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{is_not_found, Error};
use crate::instance::FIELD_MANAGER;

/// A child object: kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChildKey {
    /// `StatefulSet`, `ConfigMap`, ...
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ChildKey {
    /// The key of `K` named `name` in `namespace`.
    pub fn new<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> Self {
        Self {
            kind: K::kind(&()).into_owned(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn of<K: Resource<DynamicType = ()>>(object: &K) -> Self {
        Self::new::<K>(
            object.meta().namespace.as_deref().unwrap_or_default(),
            object.meta().name.as_deref().unwrap_or_default(),
        )
    }
}

impl std::fmt::Display for ChildKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What a write step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do (cache hit or a no-op on the server).
    Unchanged,
    /// The object did not exist and now does.
    Created,
    /// The object changed.
    Updated,
    /// The object was deleted.
    Deleted,
}

const PRUNE_ABOVE: usize = 4096;

#[derive(Debug, Clone)]
struct Written {
    fingerprint: String,
    resource_version: Option<String>,
    at: Instant,
}

/// What the operator last wrote and what the watches last saw, per child.
#[derive(Debug)]
pub struct ChildCache {
    written: Mutex<HashMap<ChildKey, Written>>,
    observed: Mutex<HashMap<ChildKey, Option<String>>>,
    ttl: Duration,
}

impl Default for ChildCache {
    fn default() -> Self {
        Self::new(Duration::from_secs(600))
    }
}

impl ChildCache {
    /// A cache whose entries are trusted for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            written: Mutex::default(),
            observed: Mutex::default(),
            ttl,
        }
    }

    /// How long a write is trusted without being redone.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Record a child's current `resourceVersion` as seen by a watch.
    pub fn observe<K: Resource<DynamicType = ()>>(&self, object: &K) {
        let key = ChildKey::of(object);
        let version = object.meta().resource_version.clone();
        lock(&self.observed).insert(key, version);
    }

    fn observed(&self, key: &ChildKey) -> Option<String> {
        lock(&self.observed).get(key).cloned().flatten()
    }

    /// Whether this process wrote `key` last (whatever it wrote) and nobody changed it since.
    pub fn wrote_last(&self, key: &ChildKey) -> bool {
        let written = lock(&self.written);
        written
            .get(key)
            .is_some_and(|entry| entry.resource_version == self.observed(key))
    }

    /// Whether `key` was written with `fingerprint` within the TTL and nobody changed it since.
    pub fn is_current(&self, key: &ChildKey, fingerprint: &str) -> bool {
        let written = lock(&self.written);
        let Some(entry) = written.get(key) else {
            return false;
        };
        entry.fingerprint == fingerprint
            && entry.at.elapsed() < self.ttl
            && entry.resource_version == self.observed(key)
    }

    fn record(&self, key: ChildKey, fingerprint: String, resource_version: Option<String>) {
        lock(&self.observed).insert(key.clone(), resource_version.clone());
        let mut written = lock(&self.written);
        // Children of deleted resources age out instead of piling up.
        if written.len() >= PRUNE_ABOVE {
            written.retain(|_, entry| entry.at.elapsed() < self.ttl);
        }
        written.insert(
            key,
            Written {
                fingerprint,
                resource_version,
                at: Instant::now(),
            },
        );
    }

    /// Forget everything about a child (after a failed write, so the next reconcile retries).
    pub fn forget(&self, key: &ChildKey) {
        lock(&self.written).remove(key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps inconsistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SHA-256 of the serialized object.
pub fn fingerprint<T: Serialize>(object: &T) -> Result<String, Error> {
    let bytes = serde_json::to_vec(object).map_err(|source| Error::Serialize {
        what: "child object",
        source,
    })?;
    Ok(super::configmaps::hex(&Sha256::digest(bytes)))
}

/// Server-side apply `object` under the operator's field manager, unless the same object was
/// already applied and nobody changed it since. `fingerprint` identifies the desired content.
pub async fn apply<K>(
    client: &Client,
    cache: &ChildCache,
    object: &K,
    fingerprint: String,
) -> Result<(Outcome, Option<K>), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let key = ChildKey::of(object);
    if cache.is_current(&key, &fingerprint) {
        return Ok((Outcome::Unchanged, None));
    }
    let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
    // The version before this write: from the watches, else (after a restart) from the server,
    // so an object that merely exists is never reported as created.
    let before = match cache.observed(&key) {
        Some(version) => Some(Some(version)),
        None => api
            .get_metadata_opt(&key.name)
            .await
            .map_err(|err| Error::kube(format!("get {key}"), err))?
            .map(|existing| existing.metadata.resource_version),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = match api.patch(&key.name, &params, &Patch::Apply(object)).await {
        Ok(applied) => applied,
        Err(err) => {
            cache.forget(&key);
            return Err(Error::kube(format!("apply {key}"), err));
        }
    };
    let after = applied.meta().resource_version.clone();
    let outcome = match before {
        Some(before) if before == after => Outcome::Unchanged,
        Some(_) => Outcome::Updated,
        None => Outcome::Created,
    };
    cache.record(key, fingerprint, after);
    Ok((outcome, Some(applied)))
}

/// Delete the child `name` of kind `K` if it exists and is owned by `owner_uid`; leave anything
/// else alone.
pub async fn remove<K>(
    client: &Client,
    cache: &ChildCache,
    namespace: &str,
    name: &str,
    owner_uid: &str,
) -> Result<Outcome, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    const ABSENT: &str = "absent";
    let key = ChildKey::new::<K>(namespace, name);
    if cache.is_current(&key, ABSENT) {
        return Ok(Outcome::Unchanged);
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let existing = api
        .get_opt(name)
        .await
        .map_err(|err| Error::kube(format!("get {key}"), err))?;
    let outcome = match existing {
        Some(object) if object.owner_references().iter().any(|o| o.uid == owner_uid) => {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => Outcome::Deleted,
                Err(err) if is_not_found(&err) => Outcome::Unchanged,
                Err(err) => return Err(Error::kube(format!("delete {key}"), err)),
            }
        }
        // Not ours: someone else's object with the same name.
        Some(_) | None => Outcome::Unchanged,
    };
    let seen = cache.observed(&key);
    cache.record(key, ABSENT.to_string(), seen);
    Ok(outcome)
}

/// Create `object` unless an object of that name exists; never update it (generated secrets
/// must keep their value).
pub async fn create_if_absent<K>(
    client: &Client,
    cache: &ChildCache,
    object: &K,
) -> Result<Outcome, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    const EXISTS: &str = "exists";
    let key = ChildKey::of(object);
    if cache.is_current(&key, EXISTS) {
        return Ok(Outcome::Unchanged);
    }
    let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
    let existing = api
        .get_metadata_opt(&key.name)
        .await
        .map_err(|err| Error::kube(format!("get {key}"), err))?;
    let outcome = if existing.is_some() {
        Outcome::Unchanged
    } else {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match api.create(&params, object).await {
            Ok(_) => Outcome::Created,
            Err(kube::Error::Api(status)) if status.code == 409 => Outcome::Unchanged,
            Err(err) => return Err(Error::kube(format!("create {key}"), err)),
        }
    };
    // Not watched (the operator does not list Secrets): trust it until the entry expires.
    let seen = cache.observed(&key);
    cache.record(key, EXISTS.to_string(), seen);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn config_map(version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("gw-config".into()),
                namespace: Some("prod".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[test]
    fn a_write_is_current_until_someone_else_changes_the_object() {
        let cache = ChildCache::default();
        let key = ChildKey::new::<ConfigMap>("prod", "gw-config");
        assert!(!cache.is_current(&key, "fp"), "never written");
        cache.record(key.clone(), "fp".into(), Some("5".into()));
        assert!(cache.is_current(&key, "fp"));
        assert!(!cache.is_current(&key, "other"), "desired content changed");
        cache.observe(&config_map("5"));
        assert!(cache.is_current(&key, "fp"), "the watch saw our own write");
        cache.observe(&config_map("6"));
        assert!(!cache.is_current(&key, "fp"), "edited by someone else");
    }

    #[test]
    fn writes_expire_after_the_ttl() {
        let cache = ChildCache::new(Duration::ZERO);
        let key = ChildKey::new::<ConfigMap>("prod", "gw-config");
        cache.record(key.clone(), "fp".into(), Some("5".into()));
        assert!(!cache.is_current(&key, "fp"));
    }

    #[test]
    fn forgetting_forces_the_next_write() {
        let cache = ChildCache::default();
        let key = ChildKey::new::<ConfigMap>("prod", "gw-config");
        cache.record(key.clone(), "fp".into(), None);
        cache.forget(&key);
        assert!(!cache.is_current(&key, "fp"));
    }

    #[test]
    fn fingerprints_follow_content() {
        let a = fingerprint(&config_map("1")).expect("fp");
        assert_eq!(a, fingerprint(&config_map("1")).expect("fp"));
        assert_ne!(a, fingerprint(&config_map("2")).expect("fp"));
    }
}
