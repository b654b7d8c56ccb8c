//! List-view query parameters as NetBox reads them: `limit`/`offset`
//! paging (capped at `MAX_PAGE_SIZE`), `ordering`, id lookups (`id`,
//! `id__gt`, `id__gte`, `id__lt`, `id__lte`), `last_updated__gte`/`__lte`,
//! and the endpoint's own filters. Unknown parameters are ignored, as
//! NetBox does; a malformed value is a 400 naming the parameter.

use crate::data::Micros;
use serde_json::{json, Value};

/// NetBox's default page size (`PAGINATE_COUNT`).
pub const PAGINATE_COUNT: usize = 50;
/// NetBox's default `MAX_PAGE_SIZE`.
pub const MAX_PAGE_SIZE: usize = 1000;

/// A parsed list query.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Every parameter, decoded, in order.
    pub params: Vec<(String, String)>,
    /// Page size after NetBox's rules.
    pub limit: usize,
    /// Rows skipped.
    pub offset: usize,
    /// `ordering=-id`.
    pub descending: bool,
    /// `id=` values (any of them).
    pub ids: Vec<u64>,
    /// Lower bound on the id, inclusive.
    pub id_min: Option<u64>,
    /// Upper bound on the id, inclusive.
    pub id_max: Option<u64>,
    /// `last_updated__gte` (or `time_after` on the change log).
    pub updated_min: Option<Micros>,
    /// `last_updated__lte` (or `time_before`).
    pub updated_max: Option<Micros>,
}

/// A 400 answer's body: `{"parameter": ["message"]}`.
pub type Invalid = Value;

fn invalid(name: &str, message: &str) -> Invalid {
    json!({ name: [message] })
}

/// Decodes `application/x-www-form-urlencoded` text.
pub fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Parses a NetBox date-time filter value: RFC 3339, or a naive
/// `YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]]` taken as UTC, or a date.
pub fn parse_datetime(value: &str) -> Option<Micros> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let micros = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1000) as Micros;
    if let Ok(t) = time::OffsetDateTime::parse(value, &Rfc3339) {
        return Some(micros(t));
    }
    let naive = value.replacen('T', " ", 1);
    let formats = [
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ];
    for format in formats {
        if let Ok(t) = time::PrimitiveDateTime::parse(&naive, format) {
            return Some(micros(t.assume_utc()));
        }
    }
    let date = time::Date::parse(value, format_description!("[year]-[month]-[day]")).ok()?;
    Some(micros(date.midnight().assume_utc()))
}

impl ListQuery {
    /// Parses a query string; `time_field` names the endpoint's change-time
    /// filter pair (`last_updated` or, on the change log, `time`).
    pub fn parse(query: &str, time_field: &str) -> Result<ListQuery, Invalid> {
        let params: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        let mut q = ListQuery {
            limit: PAGINATE_COUNT,
            ..Default::default()
        };
        let number = |name: &str, value: &str| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| invalid(name, "Enter a whole number."))
        };
        let (after, before) = if time_field == "time" {
            ("time_after".to_string(), "time_before".to_string())
        } else {
            (format!("{time_field}__gte"), format!("{time_field}__lte"))
        };
        for (name, value) in &params {
            let n = name.as_str();
            match n {
                "limit" => {
                    let limit = number(n, value)? as usize;
                    q.limit = if limit == 0 {
                        MAX_PAGE_SIZE
                    } else {
                        limit.min(MAX_PAGE_SIZE)
                    };
                }
                "offset" => q.offset = number(n, value)? as usize,
                "ordering" => q.descending = value.trim() == "-id",
                "id" => q.ids.push(number(n, value)?),
                "id__gt" => {
                    q.id_min = Some(
                        q.id_min
                            .unwrap_or(0)
                            .max(number(n, value)?.saturating_add(1)),
                    )
                }
                "id__gte" => q.id_min = Some(q.id_min.unwrap_or(0).max(number(n, value)?)),
                // Ids start at 1, so `id__lt=0` and `id__lt=1` both match nothing.
                "id__lt" => {
                    let below = number(n, value)?.saturating_sub(1);
                    q.id_max = Some(q.id_max.unwrap_or(u64::MAX).min(below));
                }
                "id__lte" => q.id_max = Some(q.id_max.unwrap_or(u64::MAX).min(number(n, value)?)),
                _ if *name == after || *name == before => {
                    let at = parse_datetime(value.trim())
                        .ok_or_else(|| invalid(n, "Enter a valid date/time."))?;
                    if *name == after {
                        q.updated_min = Some(at);
                    } else {
                        q.updated_max = Some(at);
                    }
                }
                _ => {}
            }
        }
        q.params = params;
        Ok(q)
    }

    /// Whether the object passes the filter `name` (no filter passes all);
    /// `value` gives the object's value, computed only when filtered on.
    pub fn passes<S: AsRef<str>>(&self, name: &str, value: impl FnOnce() -> Option<S>) -> bool {
        let mut wanted = self.params.iter().filter(|(k, _)| k == name).peekable();
        if wanted.peek().is_none() {
            return true;
        }
        let Some(value) = value() else {
            return false;
        };
        wanted.any(|(_, w)| w == value.as_ref())
    }

    /// The ids the id lookups leave, for a range over a map by id (never
    /// reversed, which `BTreeMap::range` refuses: ids start at 1, so `0..=0`
    /// stands for none).
    pub fn id_range(&self) -> std::ops::RangeInclusive<u64> {
        let (min, max) = (self.id_min.unwrap_or(0), self.id_max.unwrap_or(u64::MAX));
        if min > max {
            0..=0
        } else {
            min..=max
        }
    }

    /// Whether an object's id and change time pass the generic filters.
    pub fn admits(&self, id: u64, updated: Micros) -> bool {
        (self.ids.is_empty() || self.ids.contains(&id))
            && self.id_min.is_none_or(|m| id >= m)
            && self.id_max.is_none_or(|m| id <= m)
            && self.updated_min.is_none_or(|m| updated >= m)
            && self.updated_max.is_none_or(|m| updated <= m)
    }

    /// The query string of the page at `offset`, other parameters kept.
    pub fn with_offset(&self, offset: usize) -> String {
        let mut parts: Vec<String> = self
            .params
            .iter()
            .filter(|(k, _)| k != "limit" && k != "offset")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        parts.push(format!("limit={}", self.limit));
        parts.push(format!("offset={offset}"));
        parts.join("&")
    }
}

/// What a query component must escape: all but RFC 3986's unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_netbox() {
        let q = |s: &str| ListQuery::parse(s, "last_updated").unwrap();
        assert_eq!(q("").limit, PAGINATE_COUNT);
        assert_eq!(q("limit=0").limit, MAX_PAGE_SIZE);
        assert_eq!(q("limit=5000").limit, MAX_PAGE_SIZE);
        assert_eq!(q("limit=7&offset=14").offset, 14);
    }

    #[test]
    fn id_lookups_combine_into_bounds() {
        let q = ListQuery::parse("id__gt=10&id__gte=5&id__lt=20&ordering=-id", "x").unwrap();
        assert_eq!(
            (q.id_min, q.id_max, q.descending),
            (Some(11), Some(19), true)
        );
        assert!(q.admits(11, 0) && q.admits(19, 0) && !q.admits(10, 0) && !q.admits(20, 0));
    }

    #[test]
    fn bounds_that_cross_leave_no_ids() {
        let q = ListQuery::parse("id__gt=10&id__lt=5", "x").unwrap();
        assert_eq!(q.id_range(), 0..=0);
        let empty: std::collections::BTreeMap<u64, ()> = (1..20).map(|i| (i, ())).collect();
        assert_eq!(empty.range(q.id_range()).count(), 0);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let e = ListQuery::parse("id__gt=abc", "x").unwrap_err();
        assert_eq!(e, json!({"id__gt": ["Enter a whole number."]}));
        let e = ListQuery::parse("last_updated__gte=yesterday", "last_updated").unwrap_err();
        assert!(e.get("last_updated__gte").is_some());
    }

    #[test]
    fn date_times_parse_in_the_forms_netbox_takes() {
        let z = parse_datetime("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(parse_datetime("2026-01-01 00:00:00"), Some(z));
        assert_eq!(parse_datetime("2026-01-01T00:00"), Some(z));
        assert_eq!(parse_datetime("2026-01-01"), Some(z));
        assert_eq!(parse_datetime("2026-01-01T01:00:00+01:00"), Some(z));
        assert_eq!(parse_datetime("2026-01-01T00:00:00.5Z"), Some(z + 500_000));
    }

    #[test]
    fn next_links_keep_the_filters() {
        let q = ListQuery::parse("site=site-001&limit=10&offset=0", "last_updated").unwrap();
        assert_eq!(q.with_offset(10), "site=site-001&limit=10&offset=10");
    }
}
