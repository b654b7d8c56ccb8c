//! Connector settings: parsing, validation and the documented defaults.

use exposure_connector_sdk::settings::Endpoint;
use exposure_connector_sdk::types::{ConnectorError, SettingInfo};

/// Where the instance is: scheme (https unless an explicit `http://` URL to
/// a loopback IP was given) and `host[:port]`.
pub type Instance = Endpoint;

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The ServiceNow instance.
    pub instance: Instance,
    /// Table the devices come from (subclasses included).
    pub device_table: String,
    /// Source column of `serviceNowCriticality`.
    pub device_criticality_column: String,
    /// Source column of `lastLoggedOnUser`.
    pub device_last_logged_on_user_column: String,
    /// Source column of `mostFrequentUser`.
    pub device_most_frequent_user_column: String,
    /// Source column of `uPrimaryBusinessApplication`.
    pub device_primary_business_application_column: String,
    /// Source column of business applications' `uCriticality`.
    pub business_application_criticality_column: String,
    /// Seconds subtracted from the server's clock for the next watermark.
    pub watermark_lag_seconds: u32,
    /// Read only devices updated in the last N days (0 = all devices).
    pub active_within_days: u32,
    /// Whether to read `sys_audit_delete` to report deletions at the source.
    pub deletion_audit: bool,
}

/// The endpoint setting: the instance, the one origin the host lets the
/// component contact.
pub const ENDPOINT: &str = "instance";

struct SettingSpec {
    name: &'static str,
    description: &'static str,
    default: Option<&'static str>,
}

const SPECS: &[SettingSpec] = &[
    SettingSpec {
        name: "instance",
        description: "The ServiceNow instance: `contoso.service-now.com`, `https://contoso.service-now.com`, or `http://127.0.0.1:PORT` for a local test server.",
        default: None,
    },
    SettingSpec {
        name: "device_table",
        description: "Table the devices are read from; its subclasses are included.",
        default: Some("cmdb_ci_computer"),
    },
    SettingSpec {
        name: "device_criticality_column",
        description: "Device column mapped to `serviceNowCriticality` (customer-specific).",
        default: Some("u_criticality"),
    },
    SettingSpec {
        name: "device_last_logged_on_user_column",
        description: "Device column mapped to `lastLoggedOnUser` (customer-specific).",
        default: Some("u_last_logged_on_user"),
    },
    SettingSpec {
        name: "device_most_frequent_user_column",
        description: "Device column mapped to `mostFrequentUser` (customer-specific).",
        default: Some("u_most_frequent_user"),
    },
    SettingSpec {
        name: "device_primary_business_application_column",
        description: "Device column (a reference to cmdb_ci_business_app) mapped to `uPrimaryBusinessApplication` (customer-specific).",
        default: Some("u_primary_business_application"),
    },
    SettingSpec {
        name: "business_application_criticality_column",
        description: "Business application column mapped to `uCriticality` (customer-specific).",
        default: Some("u_criticality"),
    },
    SettingSpec {
        name: "watermark_lag_seconds",
        description: "Seconds subtracted from the server's clock when recording the incremental watermark, to cover transactions that commit late.",
        default: Some("60"),
    },
    SettingSpec {
        name: "active_within_days",
        description: "Read only devices updated (`sys_updated_on`) since the start of the UTC day N days ago; devices that age out of that window are reported as such. 0 reads every device.",
        default: Some("0"),
    },
    SettingSpec {
        name: "deletion_audit",
        description: "`auto`: read `sys_audit_delete` (when the user may) to tell records deleted in ServiceNow from records merely no longer returned; `off`: never read it.",
        default: Some("auto"),
    },
];

/// The settings the connector declares in `info`.
pub fn setting_infos() -> Vec<SettingInfo> {
    SPECS
        .iter()
        .map(|s| SettingInfo {
            name: s.name.to_string(),
            description: s.description.to_string(),
            required: s.default.is_none(),
            default_value: s.default.map(str::to_string),
            endpoint: s.name == ENDPOINT,
        })
        .collect()
}

impl Settings {
    /// Parses and validates name/value settings.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ConnectorError> {
        let given = Given::checked(pairs)?;
        let instance = given.get("instance").ok_or_else(|| {
            ConnectorError::InvalidSettings(
                "The `instance` setting is missing: set it to your instance's host name, e.g. `contoso.service-now.com`.".into(),
            )
        })?;
        let watermark_lag_seconds =
            given.whole_number("watermark_lag_seconds", "seconds", 86_400)?;
        let active_within_days = given.whole_number("active_within_days", "days", 36_500)?;
        let deletion_audit = given.deletion_audit()?;
        Ok(Settings {
            instance: parse_instance(&instance)?,
            device_table: given.column("device_table")?,
            device_criticality_column: given.column("device_criticality_column")?,
            device_last_logged_on_user_column: given.column("device_last_logged_on_user_column")?,
            device_most_frequent_user_column: given.column("device_most_frequent_user_column")?,
            device_primary_business_application_column: given
                .column("device_primary_business_application_column")?,
            business_application_criticality_column: given
                .column("business_application_criticality_column")?,
            watermark_lag_seconds,
            active_within_days,
            deletion_audit,
        })
    }
}

/// The settings as given, each read by its name: the last value given for
/// a name, trimmed, else the setting's default.
struct Given<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Given<'a> {
    /// `pairs`, refused when one names a setting the connector does not have.
    fn checked(pairs: &'a [(String, String)]) -> Result<Self, ConnectorError> {
        if let Some((name, _)) = pairs
            .iter()
            .find(|(name, _)| !SPECS.iter().any(|s| s.name == name))
        {
            let known: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
            return Err(ConnectorError::InvalidSettings(format!(
                "Unknown setting `{name}`. Known settings: {}.",
                known.join(", ")
            )));
        }
        Ok(Given { pairs })
    }

    /// The value of `name`: given and not blank, else its default.
    fn get(&self, name: &str) -> Option<String> {
        let given = self
            .pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty());
        given.or_else(|| {
            SPECS
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.default.map(str::to_string))
        })
    }

    /// A table or column name ([`validate_identifier`]).
    fn column(&self, name: &str) -> Result<String, ConnectorError> {
        let value = self.get(name).unwrap_or_default();
        validate_identifier(name, &value)?;
        Ok(value)
    }

    /// A whole number of `unit` from 0 to `max`.
    fn whole_number(&self, name: &str, unit: &str, max: u32) -> Result<u32, ConnectorError> {
        let text = self.get(name).unwrap_or_default();
        text.parse::<u32>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| {
                ConnectorError::InvalidSettings(format!(
                    "The `{name}` setting must be a whole number of {unit} from 0 to {max}, not `{text}`."
                ))
            })
    }

    /// `deletion_audit`: `auto` (read the audit when allowed) or `off`.
    fn deletion_audit(&self) -> Result<bool, ConnectorError> {
        match self.get("deletion_audit").unwrap_or_default().as_str() {
            "auto" => Ok(true),
            "off" => Ok(false),
            other => Err(ConnectorError::InvalidSettings(format!(
                "The `deletion_audit` setting must be `auto` or `off`, not `{other}`."
            ))),
        }
    }
}

/// Table and column names go into URLs and encoded queries: allow only the
/// characters ServiceNow uses in them.
fn validate_identifier(setting: &str, value: &str) -> Result<(), ConnectorError> {
    let ok = !value.is_empty()
        && value.len() <= 80
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConnectorError::InvalidSettings(format!(
            "The `{setting}` setting must be a ServiceNow table or column name (lower-case letters, digits and `_`), not `{value}`."
        )))
    }
}

/// Parses the `instance` setting (the connector's endpoint).
pub fn parse_instance(raw: &str) -> Result<Instance, ConnectorError> {
    Endpoint::parse("instance", raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply() {
        let s = Settings::parse(&pairs(&[("instance", "contoso.service-now.com")])).unwrap();
        assert_eq!(s.device_table, "cmdb_ci_computer");
        assert_eq!(s.device_criticality_column, "u_criticality");
        assert_eq!(
            s.instance.scheme,
            exposure_connector_sdk::settings::Scheme::Https
        );
        assert_eq!(s.watermark_lag_seconds, 60);
        assert_eq!((s.active_within_days, s.deletion_audit), (0, true));
    }

    #[test]
    fn numbers_and_switches_are_checked() {
        let with = |name: &str, value: &str| {
            Settings::parse(&pairs(&[("instance", "x.y"), (name, value)]))
        };
        assert_eq!(
            with("active_within_days", "90").unwrap().active_within_days,
            90
        );
        assert!(!with("deletion_audit", "off").unwrap().deletion_audit);
        for (name, bad) in [
            ("active_within_days", "-1"),
            ("active_within_days", "99999"),
            ("watermark_lag_seconds", "1m"),
            ("deletion_audit", "yes"),
        ] {
            let e = with(name, bad).unwrap_err();
            assert!(e.message().contains(name), "{}", e.message());
        }
    }

    #[test]
    fn instance_forms() {
        let i = parse_instance("https://Contoso.service-now.com/").unwrap();
        assert_eq!(i.authority, "contoso.service-now.com");
        let l = parse_instance("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (l.scheme, l.authority.as_str()),
            (
                exposure_connector_sdk::settings::Scheme::Http,
                "127.0.0.1:8080"
            )
        );
        for bad in [
            "evil.com@contoso.service-now.com",
            "https://contoso.service-now.com/api",
            "ftp://x",
            "",
            "https://a?b",
        ] {
            assert!(parse_instance(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        let e = Settings::parse(&pairs(&[("instance", "x.y"), ("bogus", "1")])).unwrap_err();
        assert!(e.message().contains("Unknown setting `bogus`"));
        let e =
            Settings::parse(&pairs(&[("instance", "x.y"), ("device_table", "a^b")])).unwrap_err();
        assert!(e.message().contains("device_table"));
        let e = Settings::parse(&[]).unwrap_err();
        assert!(e.message().contains("`instance` setting is missing"));
    }
}
