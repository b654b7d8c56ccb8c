//! Turning one Table API row into one output record (a JSON object string).

use crate::columns::ColumnPositions;
use crate::json_object::{JsonObject, Unescaped};
use crate::rows::{Cell, Row};
use crate::streams::{FieldKind, StreamSpec};

/// Why a row could not become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The row has no usable `sys_id`.
    MissingKey,
}

/// Values a page had to leave out because they are not what their field
/// declares (an impossible date), for one warning per page.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// How many values were left out.
    pub count: u32,
    /// The first: column, row key and value.
    pub first: Option<(String, String, String)>,
}

impl Dropped {
    /// The operator's warning, when anything was left out.
    pub fn warning(&self, table: &str) -> Option<String> {
        let (column, key, value) = self.first.as_ref()?;
        Some(format!(
            "{} value(s) read from `{table}` were not valid date-times (YYYY-MM-DD HH:MM:SS on the calendar) and were left out of their records, e.g. `{column}` of `{key}` is `{value}`. Check that data on the instance.",
            self.count
        ))
    }
}

/// Writes the rows of one page as records of one stream: each a JSON
/// object with the stream's record fields. Empty source values leave the
/// field out; booleans and timestamps are converted, and a timestamp that
/// is not a real date-time is left out and noted in [`RecordWriter::dropped`].
pub struct RecordWriter<'s> {
    spec: &'s StreamSpec,
    columns: ColumnPositions,
    dropped: Dropped,
}

impl<'s> RecordWriter<'s> {
    /// A writer of `spec`'s records, for the rows of one response (they
    /// share their columns' places).
    pub fn new(spec: &'s StreamSpec) -> RecordWriter<'s> {
        RecordWriter {
            spec,
            columns: ColumnPositions::default(),
            dropped: Dropped::default(),
        }
    }

    /// The record `row` maps to.
    pub fn write(&mut self, row: &Row<'_>) -> Result<String, RecordError> {
        let Some(key) = row.get("sys_id").and_then(Cell::text) else {
            return Err(RecordError::MissingKey);
        };
        let mut record = JsonObject::with_capacity(record_size(row));
        let located = self.columns.locate(&self.spec.fields, row);
        for (f, at) in self.spec.fields.iter().zip(located) {
            let Some(cell) = at.map(|i| &row.cells[i].1) else {
                continue;
            };
            let Some(text) = cell.text() else {
                continue;
            };
            match f.kind {
                FieldKind::Text => match cell.unescaped() {
                    Some(clean) => record.unescaped_string(&f.key, clean),
                    None => record.string(&f.key, text),
                },
                FieldKind::Boolean => {
                    if let Some(b) = parse_bool(text) {
                        record.boolean(&f.key, b);
                    }
                }
                FieldKind::Timestamp => match rfc3339_bytes(text) {
                    Some(ts) => match std::str::from_utf8(&ts).ok().and_then(Unescaped::check) {
                        Some(clean) => record.unescaped_string(&f.key, clean),
                        None => record.string(&f.key, &String::from_utf8_lossy(&ts)),
                    },
                    None => {
                        self.dropped.count += 1;
                        self.dropped.first.get_or_insert_with(|| {
                            (f.column.clone(), key.to_string(), text.to_string())
                        });
                    }
                },
            }
        }
        Ok(record.finish())
    }

    /// The values left out so far.
    pub fn dropped(&self) -> &Dropped {
        &self.dropped
    }
}

/// About the size of `row`'s record: its values, names of their size and
/// JSON's punctuation, so that the record is written without growing.
fn record_size(row: &Row<'_>) -> usize {
    let value = |cell: &Cell<'_>| cell.text().map_or(0, str::len);
    2 + row
        .cells
        .iter()
        .map(|(column, cell)| column.len() + value(cell) + 6)
        .sum::<usize>()
}

/// ServiceNow booleans: `"true"`/`"false"`, occasionally `"1"`/`"0"`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) to `YYYY-MM-DDTHH:MM:SSZ`; `None` for anything else.
pub fn to_rfc3339(text: &str) -> Option<String> {
    rfc3339_bytes(text).map(|ts| String::from_utf8_lossy(&ts).into_owned())
}

/// [`to_rfc3339`]'s text, without allocating.
fn rfc3339_bytes(text: &str) -> Option<[u8; 20]> {
    if !is_servicenow_datetime(text) {
        return None;
    }
    let mut ts = [0; 20];
    ts[..10].copy_from_slice(&text.as_bytes()[..10]);
    ts[10] = b'T';
    ts[11..19].copy_from_slice(&text.as_bytes()[11..]);
    ts[19] = b'Z';
    Some(ts)
}

/// Whether `text` is a real date-time written `YYYY-MM-DD HH:MM:SS` (month
/// 1–12, a day that month has, hour below 24, minute and second below 60).
///
/// The digits are read where they stand and `time` judges the date and the
/// time of day; its parser with a format description cost about 350
/// instructions a timestamp, two a record (BENCHMARKS.md, "The guest's
/// timestamps"). A test holds this equal to that parser.
pub fn is_servicenow_datetime(text: &str) -> bool {
    let b = text.as_bytes();
    let shape = b.len() == 19
        && [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')]
            .iter()
            .all(|&(at, sep)| b[at] == sep);
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u16, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
        })
    };
    let real = || -> Option<()> {
        let month = time::Month::try_from(u8::try_from(number(5, 7)?).ok()?).ok()?;
        let day = u8::try_from(number(8, 10)?).ok()?;
        time::Date::from_calendar_date(i32::from(number(0, 4)?), month, day).ok()?;
        let [hour, minute, second] = [(11, 13), (14, 16), (17, 19)]
            .map(|(from, to)| number(from, to).and_then(|n| u8::try_from(n).ok()));
        time::Time::from_hms(hour?, minute?, second?).ok()?;
        Some(())
    };
    shape && real().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Envelope;
    use crate::settings::Settings;
    use crate::streams::{StreamSpec, DEVICES, NETWORK_ADAPTERS};

    fn spec(name: &str) -> StreamSpec {
        let s = Settings::parse(&[("instance".into(), "x.service-now.com".into())]).unwrap();
        StreamSpec::find(&s, name).unwrap()
    }

    #[test]
    fn maps_device_row() {
        let body = br#"{"result":[{"sys_id":"0a","name":"srv \"01\" ^x","os":"","virtual":"true",
          "sys_updated_on":"2024-05-01 10:00:00","u_primary_business_application":{"link":"l","value":"b1"},
          "os_version":"10.0"}]}"#;
        let env: Envelope = serde_json::from_slice(body).unwrap();
        let rec = RecordWriter::new(&spec(DEVICES))
            .write(&env.result.unwrap()[0])
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"sysId":"0a","name":"srv \"01\" ^x","osVersion":"10.0","virtual":true,
              "uPrimaryBusinessApplication":"b1","sysUpdatedOn":"2024-05-01T10:00:00Z"})
        );
    }

    #[test]
    fn adapter_reference_plain_or_object() {
        for body in [
            &br#"{"result":[{"sys_id":"a","cmdb_ci":"d1"}]}"#[..],
            &br#"{"result":[{"sys_id":"a","cmdb_ci":{"link":"https://x/y","value":"d1"}}]}"#[..],
        ] {
            let env: Envelope = serde_json::from_slice(body).unwrap();
            let rec = RecordWriter::new(&spec(NETWORK_ADAPTERS))
                .write(&env.result.unwrap()[0])
                .unwrap();
            assert_eq!(rec, r#"{"sysId":"a","deviceSysId":"d1"}"#);
        }
    }

    #[test]
    fn an_impossible_date_is_left_out_and_noted() {
        let body =
            br#"{"result":[{"sys_id":"0a","name":"n","sys_updated_on":"2024-13-45 99:99:99"}]}"#;
        let env: Envelope = serde_json::from_slice(body).unwrap();
        let spec = spec(DEVICES);
        let mut writer = RecordWriter::new(&spec);
        let rec = writer.write(&env.result.unwrap()[0]).unwrap();
        assert_eq!(rec, r#"{"sysId":"0a","name":"n"}"#);
        assert_eq!(writer.dropped().count, 1);
        let warning = writer.dropped().warning("cmdb_ci_computer").unwrap();
        assert!(
            warning.contains("`sys_updated_on` of `0a` is `2024-13-45 99:99:99`"),
            "{warning}"
        );
    }

    #[test]
    fn missing_key_is_an_error() {
        let env: Envelope = serde_json::from_slice(br#"{"result":[{"name":"x"}]}"#).unwrap();
        assert_eq!(
            RecordWriter::new(&spec(DEVICES)).write(&env.result.unwrap()[0]),
            Err(RecordError::MissingKey)
        );
    }

    #[test]
    fn conversions() {
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(to_rfc3339("2024-05-01 10:00:0x"), None);
        assert_eq!(to_rfc3339("2024-05-01T10:00:00"), None);
        assert_eq!(to_rfc3339("+2024-05-01 10:00"), None);
        for impossible in [
            "2024-13-45 99:99:99",
            "2023-02-29 10:00:00",
            "2024-04-31 00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 23:60:00",
        ] {
            assert_eq!(to_rfc3339(impossible), None, "{impossible}");
        }
        assert_eq!(
            to_rfc3339("2024-02-29 23:59:59").as_deref(),
            Some("2024-02-29T23:59:59Z")
        );
    }

    /// `time`'s parser with the format description, which
    /// [`is_servicenow_datetime`] replaced.
    fn parsed_by_time(text: &str) -> bool {
        text.len() == 19
            && time::PrimitiveDateTime::parse(
                text,
                time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
            )
            .is_ok()
    }

    #[test]
    fn a_datetime_is_judged_as_times_parser_judges_it() {
        let seeds = [
            "2024-02-29 23:59:59",
            "2023-02-28 00:00:00",
            "2000-02-29 12:30:45",
            "1900-02-28 01:02:03",
            "0000-01-01 00:00:00",
            "9999-12-31 23:59:59",
            "2024-04-30 10:00:00",
        ];
        let bytes = [
            b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'9', b'-', b':', b' ', b'+', b'T', b'a',
        ];
        let (mut judged, mut real) = (0, 0);
        for seed in seeds {
            for at in 0..seed.len() {
                for byte in bytes {
                    let mut text = seed.as_bytes().to_vec();
                    text[at] = byte;
                    let text = String::from_utf8(text).unwrap();
                    assert_eq!(
                        is_servicenow_datetime(&text),
                        parsed_by_time(&text),
                        "{text:?}"
                    );
                    judged += 1;
                    real += usize::from(parsed_by_time(&text));
                }
            }
            for cut in [
                &seed[1..],
                &seed[..18],
                &format!("{seed}0"),
                &format!("+{seed}"),
            ] {
                assert_eq!(is_servicenow_datetime(cut), parsed_by_time(cut), "{cut:?}");
            }
        }
        assert!(real > 300 && real < judged / 2, "{real} real of {judged}");
    }
}
