//! The gossip key Secret (`<name>-gossip-key`) the operator generates once when cluster mode is
//! on and the user did not supply `cluster.gossipKeySecret`. It is created, never updated, so
//! the key survives operator restarts and reconciles.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::crd::SecretKeyRef;
use crate::error::Error;
use crate::instance::Instance;

/// Key inside the generated Secret.
pub const GOSSIP_KEY_SECRET_KEY: &str = "key";
/// Environment variable the gateway reads the gossip key from.
pub const CLUSTER_KEY_ENV: &str = "BIFROST_CLUSTER_KEY";

/// Where the pods' gossip key comes from, when cluster mode is on.
pub fn gossip_key_ref(instance: &Instance) -> Option<SecretKeyRef> {
    let cluster = &instance.spec.cluster;
    if !cluster.enabled {
        return None;
    }
    Some(
        cluster
            .gossip_key_secret
            .clone()
            .unwrap_or_else(|| SecretKeyRef {
                name: instance.gossip_key_secret_name(),
                key: GOSSIP_KEY_SECRET_KEY.to_string(),
            }),
    )
}

/// Whether the operator must generate the gossip key Secret.
pub fn generates_gossip_key(instance: &Instance) -> bool {
    instance.spec.cluster.enabled && instance.spec.cluster.gossip_key_secret.is_none()
}

/// The generated Secret holding `key_hex` (256 random bits, hex).
pub fn gossip_key_secret(instance: &Instance, key_hex: String) -> Secret {
    Secret {
        metadata: instance.child_meta(instance.gossip_key_secret_name()),
        type_: Some("Opaque".to_string()),
        string_data: Some(BTreeMap::from([(
            GOSSIP_KEY_SECRET_KEY.to_string(),
            key_hex,
        )])),
        ..Secret::default()
    }
}

/// 32 random bytes from the OS, hex-encoded.
pub fn random_key_hex() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(super::configmaps::hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::bifrost_cluster;

    #[test]
    fn cluster_mode_without_a_key_secret_uses_the_generated_one() {
        let resource = bifrost_cluster("gw").cluster_with_postgres().build();
        let instance = Instance::new(&resource).expect("instance");
        assert!(generates_gossip_key(&instance));
        assert_eq!(
            gossip_key_ref(&instance),
            Some(SecretKeyRef {
                name: "gw-gossip-key".into(),
                key: "key".into()
            })
        );
        let secret = gossip_key_secret(&instance, "ab".repeat(32));
        assert_eq!(secret.metadata.name.as_deref(), Some("gw-gossip-key"));
        assert_eq!(secret.metadata.owner_references.map(|o| o.len()), Some(1));
        assert_eq!(secret.string_data.expect("data")["key"].len(), 64);
    }

    #[test]
    fn a_supplied_key_secret_is_used_and_nothing_is_generated() {
        let resource = bifrost_cluster("gw")
            .cluster_with_postgres()
            .with(|s| {
                s.cluster.gossip_key_secret = Some(SecretKeyRef {
                    name: "mine".into(),
                    key: "gossip".into(),
                })
            })
            .build();
        let instance = Instance::new(&resource).expect("instance");
        assert!(!generates_gossip_key(&instance));
        assert_eq!(
            gossip_key_ref(&instance).map(|r| r.name),
            Some("mine".into())
        );
    }

    #[test]
    fn single_node_needs_no_gossip_key() {
        let resource = bifrost_cluster("gw").build();
        let instance = Instance::new(&resource).expect("instance");
        assert!(!generates_gossip_key(&instance));
        assert_eq!(gossip_key_ref(&instance), None);
    }

    #[test]
    fn generated_keys_are_random() {
        let key = random_key_hex().expect("OS randomness");
        assert_ne!(key, random_key_hex().expect("OS randomness"));
        assert_eq!(key.len(), 64);
    }
}
