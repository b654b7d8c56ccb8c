//! Check 1, `info`: what a host relies on before it reads anything.

use super::Check;
use connector_sandbox::runtime::{ConnectorInfo, StreamInfo};
use serde_json::Value;

/// Compiles a stream's schema as JSON Schema draft 2020-12, formats checked.
pub(super) fn validator(stream: &StreamInfo) -> Result<jsonschema::Validator, String> {
    let schema: Value = serde_json::from_str(&stream.json_schema)
        .map_err(|e| format!("the schema of `{}` is not JSON ({e})", stream.name))?;
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| {
            format!(
                "the schema of `{}` does not compile as draft 2020-12: {e}",
                stream.name
            )
        })
}

/// Check 1.
pub(super) fn info(info: &ConnectorInfo) -> Check {
    let mut problems = Vec::new();
    if !is_semver(&info.version) {
        problems.push(format!(
            "the version `{}` is not semver (MAJOR.MINOR.PATCH)",
            info.version
        ));
    }
    let endpoints: Vec<&str> = info
        .settings
        .iter()
        .filter(|s| s.endpoint)
        .map(|s| s.name.as_str())
        .collect();
    if endpoints.len() != 1 {
        problems.push(format!(
            "exactly one setting must be the endpoint; {} are ({})",
            endpoints.len(),
            endpoints.join(", ")
        ));
    }
    if info.streams.is_empty() {
        problems.push("the connector declares no stream".into());
    }
    let names: Vec<&str> = info.streams.iter().map(|s| s.name.as_str()).collect();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            problems.push(format!("the stream `{name}` is declared twice"));
        }
    }
    for stream in &info.streams {
        problems.extend(stream_problems(stream, &names));
    }
    Check::from_problems(
        "info",
        problems,
        format!(
            "{} {}: {} streams, endpoint setting `{}`",
            info.name,
            info.version,
            info.streams.len(),
            endpoints.first().unwrap_or(&"")
        ),
    )
}

/// What is wrong with one stream's declaration.
fn stream_problems(stream: &StreamInfo, streams: &[&str]) -> Vec<String> {
    let name = &stream.name;
    if let Err(e) = validator(stream) {
        return vec![e];
    }
    let schema: Value = serde_json::from_str(&stream.json_schema).unwrap_or(Value::Null);
    let properties = schema.get("properties").and_then(Value::as_object);
    let declared = |field: &str| properties.is_some_and(|p| p.contains_key(field));
    let mut problems = Vec::new();
    match properties.and_then(|p| p.get(&stream.key_field)) {
        None => problems.push(format!(
            "`{name}`: the key field `{}` is not in the schema's properties",
            stream.key_field
        )),
        Some(key) if !is_scalar_key(key) => problems.push(format!(
            "`{name}`: the key field `{}` must be a string or an integer, the schema says {}",
            stream.key_field,
            key.get("type").unwrap_or(&Value::Null)
        )),
        Some(_) => {}
    }
    if let Some(updated) = stream.updated_field.as_deref().filter(|f| !declared(f)) {
        problems.push(format!(
            "`{name}`: the updated field `{updated}` is not in the schema's properties"
        ));
    }
    for r in &stream.references {
        if !declared(&r.field) {
            problems.push(format!(
                "`{name}`: the reference field `{}` is not in the schema's properties",
                r.field
            ));
        }
        if !streams.contains(&r.target_stream.as_str()) {
            problems.push(format!(
                "`{name}`: the reference `{}` names the stream `{}`, which does not exist",
                r.field, r.target_stream
            ));
        }
    }
    problems
}

/// Whether a property's schema makes it a string or an integer.
fn is_scalar_key(property: &Value) -> bool {
    let scalar = |t: &Value| matches!(t.as_str(), Some("string" | "integer"));
    match property.get("type") {
        Some(Value::Array(types)) => !types.is_empty() && types.iter().all(scalar),
        Some(t) => scalar(t),
        None => false,
    }
}

/// `MAJOR.MINOR.PATCH`, optionally `-pre` and `+build`.
fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;
    use connector_sandbox::runtime::exposure::connector::types::{SettingInfo, StreamReference};

    fn good() -> ConnectorInfo {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "parentId": {"type": "integer"},
                "updated": {"type": "string", "format": "date-time"},
            },
        });
        let stream = |name: &str| StreamInfo {
            name: name.into(),
            description: String::new(),
            key_field: "id".into(),
            json_schema: schema.to_string(),
            supports_incremental: false,
            references: vec![],
            updated_field: Some("updated".into()),
        };
        let mut child = stream("children");
        child.references.push(StreamReference {
            field: "parentId".into(),
            target_stream: "parents".into(),
            embed_as: None,
        });
        ConnectorInfo {
            name: "t".into(),
            version: "1.2.3".into(),
            description: String::new(),
            settings: vec![SettingInfo {
                name: "url".into(),
                description: String::new(),
                required: true,
                default_value: None,
                endpoint: true,
            }],
            auth_methods: vec![],
            streams: vec![stream("parents"), child],
        }
    }

    /// Each mutation of a good `info` fails the check, saying why.
    #[test]
    fn every_rule_of_info_can_fail() {
        assert_eq!(info(&good()).status, Status::Pass, "{:?}", info(&good()));
        type Mutation = (&'static str, fn(&mut ConnectorInfo));
        let mutations: Vec<Mutation> = vec![
            ("not semver", |i| i.version = "1.2".into()),
            ("exactly one setting must be the endpoint", |i| {
                i.settings[0].endpoint = false
            }),
            ("does not compile", |i| {
                i.streams[0].json_schema = r#"{"type": 7}"#.into()
            }),
            ("is not JSON", |i| i.streams[0].json_schema = "{".into()),
            ("key field `uid` is not in", |i| {
                i.streams[0].key_field = "uid".into()
            }),
            ("must be a string or an integer", |i| {
                i.streams[0].json_schema =
                    r#"{"properties":{"id":{"type":"object"},"updated":{}}}"#.into()
            }),
            ("updated field `changed` is not in", |i| {
                i.streams[0].updated_field = Some("changed".into())
            }),
            ("reference field `parentId2` is not in", |i| {
                i.streams[1].references[0].field = "parentId2".into()
            }),
            ("which does not exist", |i| {
                i.streams[1].references[0].target_stream = "nobody".into()
            }),
            ("declared twice", |i| i.streams[1].name = "parents".into()),
            ("declares no stream", |i| i.streams.clear()),
        ];
        for (why, mutate) in mutations {
            let mut broken = good();
            mutate(&mut broken);
            let check = info(&broken);
            assert_eq!(check.status, Status::Fail, "{why}: {check:?}");
            assert!(check.detail.contains(why), "{why}: {}", check.detail);
        }
    }

    #[test]
    fn semver_and_scalar_keys() {
        for good in ["0.1.0", "1.20.3-rc.1", "2.0.0+build.5"] {
            assert!(is_semver(good), "{good}");
        }
        for bad in ["1.0", "v1.0.0", "01.0.0", "1.0.x", ""] {
            assert!(!is_semver(bad), "{bad}");
        }
        assert!(is_scalar_key(&serde_json::json!({"type": "integer"})));
        assert!(is_scalar_key(&serde_json::json!({"type": ["string"]})));
        assert!(!is_scalar_key(
            &serde_json::json!({"type": ["string", "null"]})
        ));
        assert!(!is_scalar_key(&serde_json::json!({"type": "object"})));
    }
}
