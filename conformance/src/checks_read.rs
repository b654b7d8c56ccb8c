//! Checks 5 to 9, over whole reads of every stream: `records`, `paging`,
//! `resume`, `repeatable`, `incremental`.

use super::checks_info::validator;
use super::harness::{Harness, Read, ReadSpec, MAX_PAGES};
use super::Check;
use connector_engine::store::StoredRecord;
use connector_sandbox::runtime::{Partition, StreamInfo};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Partitions the disjointness check splits a stream into.
const PARTITIONS: u32 = 3;

/// Problems and notes gathered per check across streams.
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    notes: Vec<String>,
    skipped: Vec<String>,
}

impl Findings {
    fn check(self, name: &'static str) -> Check {
        if !self.problems.is_empty() {
            Check::fail(name, self.problems.join("; "))
        } else if self.notes.is_empty() {
            Check::skip(name, self.skipped.join("; "))
        } else {
            let mut detail = self.notes.join("; ");
            if !self.skipped.is_empty() {
                detail.push_str(&format!(" (not judged: {})", self.skipped.join("; ")));
            }
            Check::pass(name, detail)
        }
    }
}

/// The five checks, in order.
#[derive(Default)]
struct ReadFindings {
    records: Findings,
    paging: Findings,
    resume: Findings,
    repeatable: Findings,
    incremental: Findings,
}

/// Runs checks 5 to 9 on every stream.
pub(super) async fn reads(h: &Harness) -> Vec<Check> {
    let mut f = ReadFindings::default();
    for stream in &h.info.streams {
        if let Err(e) = judge_stream(h, stream, &mut f).await {
            f.records.problems.push(e);
        }
    }
    vec![
        f.records.check("records"),
        f.paging.check("paging"),
        f.resume.check("resume"),
        f.repeatable.check("repeatable"),
        f.incremental.check("incremental"),
    ]
}

fn spec<'a>(stream: &'a str, partition: Partition, page_size: u32) -> ReadSpec<'a> {
    ReadSpec {
        stream,
        partition,
        page_size,
        cursor: None,
        watermark: None,
    }
}

const WHOLE: Partition = Partition { index: 0, count: 1 };

/// Reads one stream every way the checks need; the first read that fails
/// ends the stream's checks with that error.
async fn judge_stream(
    h: &Harness,
    stream: &StreamInfo,
    f: &mut ReadFindings,
) -> Result<(), String> {
    let name = stream.name.as_str();
    let configured = h.config.sync.page_size;
    let first = h.read(&spec(name, WHOLE, configured)).await?;
    let records = keyed(stream, &first, &mut f.records.problems);
    judge_pages(name, &first, configured, &mut f.paging.problems);
    f.records.notes.push(format!(
        "`{name}`: {} valid records, unique keys",
        records.len()
    ));
    // Small pages, so that every read below spans several.
    let page_size = u32::try_from(records.len().div_ceil(4))
        .unwrap_or(u32::MAX)
        .clamp(1, configured);
    let whole = h.read(&spec(name, WHOLE, page_size)).await?;
    judge_pages(name, &whole, page_size, &mut f.paging.problems);
    let whole_records = keyed(stream, &whole, &mut f.records.problems);
    judge_partitions(h, stream, page_size, &whole_records, &mut f.paging).await?;
    judge_resume(h, stream, page_size, &whole, &mut f.resume).await?;
    let again = h.read(&spec(name, WHOLE, page_size)).await?;
    let again_records = keyed(stream, &again, &mut Vec::new());
    if again_records == whole_records {
        f.repeatable.notes.push(format!(
            "`{name}`: the same {} records twice",
            whole_records.len()
        ));
    } else {
        f.repeatable.problems.push(format!(
            "`{name}`: two full reads differ ({} and {} records{})",
            whole_records.len(),
            again_records.len(),
            first_difference(&whole_records, &again_records)
        ));
    }
    judge_incremental(
        h,
        stream,
        page_size,
        &whole,
        &whole_records,
        &mut f.incremental,
    )
    .await
}

/// Records by key; problems for invalid records and repeated keys.
fn keyed(stream: &StreamInfo, read: &Read, problems: &mut Vec<String>) -> BTreeMap<String, Value> {
    let name = &stream.name;
    let validator = match validator(stream) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let mut records = BTreeMap::new();
    for json in read.records() {
        let key = match StoredRecord::index(name, &stream.key_field, None, json.clone()) {
            Ok(r) => r.key,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let value: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        if let Some(error) = validator
            .as_ref()
            .and_then(|v| v.iter_errors(&value).next())
        {
            problems.push(format!(
                "`{name}` record `{key}` is not valid against its schema: {error} (at `{}`)",
                error.instance_path()
            ));
        }
        if records.insert(key.clone(), value).is_some() {
            problems.push(format!("`{name}`: the key `{key}` comes twice in one read"));
        }
    }
    problems.truncate(20);
    records
}

/// A read must end, and no page may hold more records than asked for.
fn judge_pages(stream: &str, read: &Read, page_size: u32, problems: &mut Vec<String>) {
    if !read.ended {
        problems.push(format!("`{stream}`: the cursors did not end (a cursor came back unchanged, or there were more than {MAX_PAGES} pages of {page_size})"));
    }
    if let Some(big) = read
        .pages
        .iter()
        .map(|p| p.records.len())
        .max()
        .filter(|n| *n > page_size as usize)
    {
        problems.push(format!(
            "`{stream}`: a page held {big} records although page-size was {page_size}"
        ));
    }
}

/// Partitions are disjoint and together give the records of one partition.
async fn judge_partitions(
    h: &Harness,
    stream: &StreamInfo,
    page_size: u32,
    whole: &BTreeMap<String, Value>,
    f: &mut Findings,
) -> Result<(), String> {
    let name = stream.name.as_str();
    let mut union: BTreeSet<String> = BTreeSet::new();
    for index in 0..PARTITIONS {
        let part = h
            .read(&spec(
                name,
                Partition {
                    index,
                    count: PARTITIONS,
                },
                page_size,
            ))
            .await?;
        judge_pages(name, &part, page_size, &mut f.problems);
        for key in keyed(stream, &part, &mut Vec::new()).into_keys() {
            if !union.insert(key.clone()) {
                f.problems
                    .push(format!("`{name}`: the key `{key}` comes in two partitions"));
            }
        }
    }
    let whole_keys: BTreeSet<String> = whole.keys().cloned().collect();
    if union != whole_keys {
        let missing = whole_keys.difference(&union).next();
        let extra = union.difference(&whole_keys).next();
        f.problems.push(format!("`{name}`: {PARTITIONS} partitions gave {} records, one partition {} (e.g. missing {missing:?}, extra {extra:?})", union.len(), whole_keys.len()));
    } else {
        f.notes.push(format!("`{name}`: {} records in {PARTITIONS} disjoint partitions, pages of at most {page_size}", union.len()));
    }
    Ok(())
}

/// Resuming from the middle yields exactly the rest.
async fn judge_resume(
    h: &Harness,
    stream: &StreamInfo,
    page_size: u32,
    whole: &Read,
    f: &mut Findings,
) -> Result<(), String> {
    let name = stream.name.as_str();
    if whole.pages.len() < 2 {
        f.skipped.push(format!("`{name}` fits in one page"));
        return Ok(());
    }
    let middle = whole.pages.len() / 2;
    let cursor = whole.pages[middle - 1].next_cursor.clone();
    let rest = h
        .read(&ReadSpec {
            cursor,
            ..spec(name, WHOLE, page_size)
        })
        .await?;
    let expected: Vec<&String> = whole.pages[middle..]
        .iter()
        .flat_map(|p| &p.records)
        .collect();
    let key = |json: &String| {
        StoredRecord::index(name, &stream.key_field, None, json.clone())
            .map(|r| r.key)
            .unwrap_or_default()
    };
    let got: Vec<String> = rest.records().map(key).collect();
    let want: Vec<String> = expected.into_iter().map(key).collect();
    let before: BTreeSet<String> = whole.pages[..middle]
        .iter()
        .flat_map(|p| &p.records)
        .map(key)
        .collect();
    let repeated = got.iter().find(|k| before.contains(*k));
    if !rest.ended {
        f.problems.push(format!(
            "`{name}`: the read resumed after page {middle} did not end"
        ));
    } else if let Some(k) = repeated {
        f.problems.push(format!("`{name}`: the read resumed after page {middle} returned `{k}`, which came before that cursor"));
    } else if got == want {
        f.notes.push(format!(
            "`{name}`: resumed after page {middle} of {}, {} remaining records",
            whole.pages.len(),
            got.len()
        ));
    } else {
        f.problems.push(format!("`{name}`: resuming after page {middle} gave {} records, the rest of the read had {} (first got {:?}, first expected {:?})", got.len(), want.len(), got.first(), want.first()));
    }
    Ok(())
}

/// Incremental reads: only what changed since the watermark; nothing from the future.
async fn judge_incremental(
    h: &Harness,
    stream: &StreamInfo,
    page_size: u32,
    whole: &Read,
    records: &BTreeMap<String, Value>,
    f: &mut Findings,
) -> Result<(), String> {
    let name = stream.name.as_str();
    if !stream.supports_incremental {
        f.skipped
            .push(format!("`{name}` does not support incremental reads"));
        return Ok(());
    }
    let Some(watermark) = whole.pages.iter().find_map(|p| p.watermark.clone()) else {
        f.problems.push(format!(
            "`{name}` supports incremental reads, but its full read returned no watermark"
        ));
        return Ok(());
    };
    let since = h
        .read(&ReadSpec {
            watermark: Some(watermark.clone()),
            ..spec(name, WHOLE, page_size)
        })
        .await?;
    let changed = keyed(stream, &since, &mut f.problems);
    let floor = instant_digits(&watermark);
    for (key, record) in &changed {
        let updated = stream
            .updated_field
            .as_deref()
            .and_then(|u| record.get(u))
            .and_then(Value::as_str);
        if let (Some(floor), Some(at)) = (&floor, updated.and_then(instant_digits)) {
            if at < *floor {
                f.problems.push(format!("`{name}`: the incremental read from `{watermark}` returned `{key}`, updated {} before it", updated.unwrap_or_default()));
            }
        }
        if !records.contains_key(key) {
            f.notes
                .push(format!("`{name}`: `{key}` appeared since the full read"));
        }
    }
    let Some(future) = future_of(&watermark) else {
        f.skipped.push(format!("`{name}`: its watermark `{watermark}` does not start with a year, so no future one can be made"));
        return Ok(());
    };
    let later = h
        .read(&ReadSpec {
            watermark: Some(future.clone()),
            ..spec(name, WHOLE, page_size)
        })
        .await?;
    let returned = later.records().count();
    if returned > 0 {
        f.problems.push(format!(
            "`{name}`: a read from the future watermark `{future}` returned {returned} records"
        ));
    }
    if later.pages.iter().all(|p| p.watermark.is_none()) {
        f.problems.push(format!(
            "`{name}`: a read from the future watermark `{future}` returned no watermark"
        ));
    }
    f.notes.push(format!(
        "`{name}`: {} changed since `{watermark}`, none from the future",
        changed.len()
    ));
    Ok(())
}

/// The first 14 digits of a date-time (`YYYYMMDDHHMMSS`), whatever its punctuation.
fn instant_digits(text: &str) -> Option<String> {
    let digits: String = text.chars().filter(char::is_ascii_digit).take(14).collect();
    (digits.len() == 14).then_some(digits)
}

/// The watermark ten years later, when it starts with a four-digit year.
fn future_of(watermark: &str) -> Option<String> {
    let year: u32 = watermark.get(..4)?.parse().ok()?;
    Some(format!("{}{}", year + 10, &watermark[4..]))
}

/// Where two keyed reads first differ, for messages.
fn first_difference(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> String {
    a.iter()
        .find(|(k, v)| b.get(*k) != Some(*v))
        .or_else(|| b.iter().find(|(k, _)| !a.contains_key(*k)))
        .map(|(k, _)| format!("; first at `{k}`"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_compare_by_their_digits() {
        assert_eq!(
            instant_digits("2026-11-27 01:39:33").as_deref(),
            Some("20261127013933")
        );
        assert_eq!(
            instant_digits("2026-11-27T01:39:33Z").as_deref(),
            Some("20261127013933")
        );
        assert_eq!(instant_digits("yesterday"), None);
        assert_eq!(
            future_of("2026-11-27 01:39:33").as_deref(),
            Some("2036-11-27 01:39:33")
        );
        assert_eq!(future_of("n/a"), None);
    }
}
