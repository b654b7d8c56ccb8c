//! `info`: describes a component (settings, auth methods, streams), or
//! prints the WIT world it targets (`--wit`).

use crate::connection::{component_bytes, prepare, ComponentRef};
use crate::failure::config_failure;
use anyhow::Result;
use connector_sandbox::runtime::{AuthMethod, ConnectorInfo};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Prints the description of a component: the file `plugin`, the bundled
/// connector `connector`, or the default bundled one.
pub async fn info(
    connector: Option<&str>,
    plugin: Option<&Path>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let p = prepare(ComponentRef::choose(connector, plugin)).await?;
    let i = &p.info;
    if json {
        writeln!(out, "{}", serde_json::to_string(&info_json(i))?)?;
        return Ok(());
    }
    writeln!(out, "{} {}", i.name, i.version)?;
    writeln!(out, "{}", i.description)?;
    writeln!(out, "\nSettings:")?;
    for s in &i.settings {
        let default = s
            .default_value
            .as_deref()
            .map(|d| format!(" (default: {d})"))
            .unwrap_or_default();
        let required = if s.required { " [required]" } else { "" };
        let required = if s.endpoint {
            format!("{required} [endpoint: the one origin it may contact]")
        } else {
            required.to_string()
        };
        writeln!(
            out,
            "  {}{required}{default}\n      {}",
            s.name, s.description
        )?;
    }
    writeln!(out, "\nAuthentication methods:")?;
    for m in &i.auth_methods {
        writeln!(out, "  {}", auth_method_text(m))?;
    }
    writeln!(out, "\nStreams:")?;
    for s in &i.streams {
        let fields = schema_fields(&s.json_schema);
        writeln!(out, "  {} (key {}): {}", s.name, s.key_field, s.description)?;
        writeln!(out, "      fields: {}", fields.join(", "))?;
        for r in &s.references {
            match &r.embed_as {
                Some(name) => writeln!(
                    out,
                    "      {} → {} (embedded there as `{name}`)",
                    r.field, r.target_stream
                )?,
                None => writeln!(out, "      {} → {}", r.field, r.target_stream)?,
            }
        }
    }
    Ok(())
}

/// Prints the WIT the component's binary carries: its world (exactly what
/// it imports and exports) and, nested, every package that world names,
/// so the output is one WIT document another toolchain can read.
pub fn wit(which: ComponentRef<'_>, out: &mut dyn Write) -> Result<()> {
    let (bytes, what) = component_bytes(which)?;
    let decoded = wit_component::decode(&bytes).map_err(|e| {
        config_failure(format!(
            "cannot read the WIT of {what}: {e:#}; is it a WebAssembly component?"
        ))
    })?;
    let resolve = decoded.resolve();
    let root = decoded.package();
    let nested: Vec<_> = resolve
        .packages
        .iter()
        .map(|(id, _)| id)
        .filter(|id| *id != root)
        .collect();
    let mut printer = wit_component::WitPrinter::default();
    printer.print(resolve, root, &nested)?;
    writeln!(out, "{}", printer.output)?;
    Ok(())
}

fn auth_method_text(m: &AuthMethod) -> String {
    match m {
        AuthMethod::Basic => "basic".into(),
        AuthMethod::Oauth2(o) => format!(
            "oauth2 (token endpoint {}; grants: {})",
            o.token_path,
            o.grants
                .iter()
                .map(|g| connector_sandbox::credentials::grant_name(*g))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        AuthMethod::ApiKey(k) => {
            let format = format!(
                "{}: {}<key>",
                k.header_name,
                k.value_prefix.as_deref().unwrap_or("")
            );
            match &k.key_prefix {
                Some(prefix) => format!("api-key ({format}, for keys starting with {prefix})"),
                None => format!("api-key ({format})"),
            }
        }
    }
}

fn schema_fields(schema: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(schema)
        .ok()
        .and_then(|v| {
            v.get("properties")
                .and_then(|p| p.as_object())
                .map(|p| p.keys().cloned().collect())
        })
        .unwrap_or_default()
}

/// `info --json`: the component's description.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InfoJson<'a> {
    name: &'a str,
    version: &'a str,
    description: &'a str,
    settings: Vec<SettingJson<'a>>,
    /// Each method as `info` prints it.
    auth_methods: Vec<String>,
    streams: Vec<StreamJson<'a>>,
}

/// A setting the component reads.
#[derive(Serialize)]
struct SettingJson<'a> {
    name: &'a str,
    description: &'a str,
    required: bool,
    default: Option<&'a str>,
    /// The one setting whose origin the component may contact.
    endpoint: bool,
}

/// A stream and its record schema.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StreamJson<'a> {
    name: &'a str,
    description: &'a str,
    key_field: &'a str,
    supports_incremental: bool,
    /// The JSON Schema (null if the component's text is not JSON).
    schema: serde_json::Value,
    references: Vec<ReferenceJson<'a>>,
}

/// A field of one stream naming a record of another.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferenceJson<'a> {
    field: &'a str,
    target_stream: &'a str,
    embed_as: Option<&'a str>,
}

fn info_json(i: &ConnectorInfo) -> InfoJson<'_> {
    InfoJson {
        name: &i.name,
        version: &i.version,
        description: &i.description,
        settings: i
            .settings
            .iter()
            .map(|s| SettingJson {
                name: &s.name,
                description: &s.description,
                required: s.required,
                default: s.default_value.as_deref(),
                endpoint: s.endpoint,
            })
            .collect(),
        auth_methods: i.auth_methods.iter().map(auth_method_text).collect(),
        streams: i
            .streams
            .iter()
            .map(|s| StreamJson {
                name: &s.name,
                description: &s.description,
                key_field: &s.key_field,
                supports_incremental: s.supports_incremental,
                schema: serde_json::from_str(&s.json_schema).unwrap_or(serde_json::Value::Null),
                references: s
                    .references
                    .iter()
                    .map(|r| ReferenceJson {
                        field: &r.field,
                        target_stream: &r.target_stream,
                        embed_as: r.embed_as.as_deref(),
                    })
                    .collect(),
            })
            .collect(),
    }
}
