//! The harness's way into a guest that boots from its disk: Flatcar's, an Ignition config
//! that gives `core` the harness's SSH key. A case's own config (the Ignition way) gets the
//! key added to it, so the guest still sees exactly one config, the case's.

use serde_json::{Value, json};

/// `config` (a case's Ignition config, or none) with `public` among `core`'s
/// `sshAuthorizedKeys`. A config that is not a JSON object is handed over as it is: Ignition
/// is to say what is wrong with it, and no login is expected then.
pub fn with_core_key(config: Option<&[u8]>, public: &str) -> Vec<u8> {
    let key = public.trim();
    let mut value = match config {
        None => json!({ "ignition": { "version": "3.0.0" } }),
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(v) if v.is_object() => v,
            _ => return bytes.to_vec(),
        },
    };
    let Some(root) = value.as_object_mut() else {
        return config.map(<[u8]>::to_vec).unwrap_or_default();
    };
    let passwd = root.entry("passwd").or_insert_with(|| json!({}));
    if !passwd.is_object() {
        *passwd = json!({});
    }
    let users = passwd
        .as_object_mut()
        .map(|p| p.entry("users").or_insert_with(|| json!([])));
    let Some(users) = users.and_then(Value::as_array_mut) else {
        return config.map(<[u8]>::to_vec).unwrap_or_default();
    };
    match users
        .iter_mut()
        .find(|u| u.get("name").and_then(Value::as_str) == Some("core"))
    {
        Some(core) => {
            let keys = core
                .as_object_mut()
                .map(|c| c.entry("sshAuthorizedKeys").or_insert_with(|| json!([])));
            if let Some(keys) = keys.and_then(Value::as_array_mut) {
                keys.push(json!(key));
            }
        }
        None => users.push(json!({ "name": "core", "sshAuthorizedKeys": [key] })),
    }
    serde_json::to_vec_pretty(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of_core(bytes: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(bytes).expect("json");
        v["passwd"]["users"]
            .as_array()
            .expect("users")
            .iter()
            .filter(|u| u["name"] == "core")
            .flat_map(|u| {
                u["sshAuthorizedKeys"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|k| k.as_str().map(String::from))
            .collect()
    }

    #[test]
    fn a_guest_without_a_case_config_gets_one_with_only_the_key() {
        let c = with_core_key(None, "ssh-ed25519 AAAA sysext-test\n");
        assert_eq!(keys_of_core(&c), ["ssh-ed25519 AAAA sysext-test"]);
    }

    #[test]
    fn a_case_config_keeps_its_files_and_gains_the_key() {
        let case = br#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/x"}]},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["theirs"]}]}}"#;
        let c = with_core_key(Some(case), "ours");
        let v: Value = serde_json::from_slice(&c).expect("json");
        assert_eq!(v["ignition"]["version"], "3.3.0");
        assert_eq!(v["storage"]["files"][0]["path"], "/x");
        assert_eq!(keys_of_core(&c), ["theirs", "ours"]);
    }

    #[test]
    fn a_config_that_is_not_json_is_passed_on_unchanged() {
        assert_eq!(with_core_key(Some(b"not json"), "ours"), b"not json");
    }
}
