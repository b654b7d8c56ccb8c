//! A submitted Connect form, read against the connector's form: the
//! request the host gets, and the plain values the page shows again
//! (never a secret).

use super::form::{ConnectRequest, ConnectorForm, SecretValue};

/// The fields of a submitted form, in the order the browser sent them.
#[derive(Debug, Default)]
pub struct Submitted(Vec<(String, String)>);

impl Submitted {
    /// The fields as the browser sent them.
    pub fn new(fields: Vec<(String, String)>) -> Submitted {
        Submitted(fields)
    }

    /// The value of field `name`, trimmed (empty when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// The request these fields make for `form`: its settings, the chosen
    /// method's fields (secrets apart), empty values left out; names the
    /// form does not have are ignored.
    pub fn request(&self, form: &ConnectorForm) -> ConnectRequest {
        let given = |name: &str| Some(self.get(name)).filter(|v| !v.is_empty());
        let settings = form
            .settings
            .iter()
            .filter_map(|s| Some((s.name.clone(), given(&setting_field(&s.name))?.to_string())))
            .collect();
        let chosen = form
            .auth_methods
            .iter()
            .find(|m| m.method == self.get(METHOD_FIELD))
            .or(form.auth_methods.first());
        let mut auth_fields = Vec::new();
        let mut secrets = Vec::new();
        for field in chosen.iter().flat_map(|m| &m.fields) {
            let Some(method) = chosen else { break };
            // A secret is taken as typed: spaces can be part of a password.
            let name = auth_field(&method.method, &field.name);
            if field.secret {
                if let Some((_, v)) = self.0.iter().find(|(n, v)| *n == name && !v.is_empty()) {
                    secrets.push((field.name.clone(), SecretValue::new(v.clone())));
                }
            } else if let Some(v) = given(&name) {
                auth_fields.push((field.name.clone(), v.to_string()));
            }
        }
        ConnectRequest {
            connector: form.connector.clone(),
            id: self.get(ID_FIELD).to_string(),
            every: given(EVERY_FIELD).map(str::to_string),
            settings,
            auth_method: chosen.map(|m| m.method.clone()),
            auth_fields,
            secrets,
        }
    }

    /// The values to show again: every plain field of `form`, never a secret.
    pub fn shown(&self, form: &ConnectorForm) -> Vec<(String, String)> {
        let secret: Vec<String> = form
            .auth_methods
            .iter()
            .flat_map(|m| {
                m.fields
                    .iter()
                    .filter(|f| f.secret)
                    .map(|f| auth_field(&m.method, &f.name))
            })
            .collect();
        self.0
            .iter()
            .filter(|(n, _)| !secret.contains(n) && n != "csrf" && n != DRAFT_FIELD)
            .cloned()
            .collect()
    }
}

/// The field holding the connection's identifier.
pub const ID_FIELD: &str = "id";
/// The field holding the time between syncs.
pub const EVERY_FIELD: &str = "every";
/// The field holding the chosen authentication method.
pub const METHOD_FIELD: &str = "auth.method";
/// The field naming the draft that keeps the tested secrets.
pub const DRAFT_FIELD: &str = "draft";

/// The form field of setting `name`.
pub fn setting_field(name: &str) -> String {
    format!("setting.{name}")
}

/// The form field of authentication method `method`'s field `field`.
pub fn auth_field(method: &str, field: &str) -> String {
    format!("auth.{method}.{field}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::form::{AuthChoice, AuthField, SettingField};

    fn form() -> ConnectorForm {
        let setting = |name: &str| SettingField {
            name: name.into(),
            description: String::new(),
            required: false,
            default_value: None,
            endpoint: false,
        };
        let field = |name: &str, secret| AuthField {
            name: name.into(),
            label: name.into(),
            secret,
        };
        ConnectorForm {
            connector: "servicenow".into(),
            title: "servicenow-cmdb 0.1.0".into(),
            description: String::new(),
            settings: vec![setting("instance"), setting("device_table")],
            auth_methods: vec![
                AuthChoice {
                    method: "basic".into(),
                    label: "Basic".into(),
                    fields: vec![field("username", false), field("password", true)],
                },
                AuthChoice {
                    method: "api-key".into(),
                    label: "API key".into(),
                    fields: vec![field("api_key", true)],
                },
            ],
        }
    }

    fn submitted(pairs: &[(&str, &str)]) -> Submitted {
        Submitted::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn only_the_forms_settings_and_the_chosen_methods_fields_are_taken() {
        let s = submitted(&[
            ("id", " cmdb "),
            ("every", ""),
            ("setting.instance", "http://127.0.0.1:9"),
            ("setting.device_table", ""),
            ("setting.not_a_setting", "x"),
            ("auth.method", "basic"),
            ("auth.basic.username", "reader"),
            ("auth.basic.password", " pass word "),
            ("auth.api-key.api_key", "other"),
        ]);
        let r = s.request(&form());
        assert_eq!(r.id, "cmdb");
        assert_eq!(r.every, None);
        assert_eq!(
            r.settings,
            vec![("instance".into(), "http://127.0.0.1:9".into())]
        );
        assert_eq!(r.auth_method.as_deref(), Some("basic"));
        assert_eq!(r.auth_fields, vec![("username".into(), "reader".into())]);
        assert_eq!(r.secrets.len(), 1);
        assert_eq!(r.secrets[0].1.expose(), " pass word ");
    }

    #[test]
    fn secrets_are_never_shown_again() {
        let s = submitted(&[
            ("csrf", "token"),
            ("id", "cmdb"),
            ("auth.basic.username", "reader"),
            ("auth.basic.password", "hunter2"),
            ("auth.api-key.api_key", "key"),
        ]);
        let shown = s.shown(&form());
        assert_eq!(
            shown,
            vec![
                ("id".into(), "cmdb".into()),
                ("auth.basic.username".into(), "reader".into())
            ]
        );
    }
}
