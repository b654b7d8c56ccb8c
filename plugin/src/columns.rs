//! Where a stream's columns sit in the rows of a page.
//!
//! The Table API sends every row of a response with the same columns in the
//! same order. Looking each field's column up by name in every row cost
//! 5.5 % of the host's CPU in the 1M-device sync (BENCHMARKS.md, "The
//! guest's column lookups"), much of it for columns a row does not have:
//! each such look compared every cell. [`ColumnPositions`] learns the
//! positions from one row and checks them on the next with one comparison
//! per column found, learning again only when a row differs. The names are
//! compared eight bytes at a time (`same_name`): a wasm32 guest's
//! `memcmp` compares one byte at a time, and was 2.8 % of the host's CPU
//! with every check a call to it.

use crate::rows::Row;
use crate::streams::FieldMap;

/// Each field's cell in the last row looked at, trusted for the next row
/// while that row has the same columns at the same places.
#[derive(Debug, Default)]
pub struct ColumnPositions {
    /// Per field: the index of the first cell of its column, or `None`.
    at: Vec<Option<usize>>,
    /// Indexes of the cells no field's column took.
    others: Vec<usize>,
    /// How many cells that row had.
    row_len: usize,
    /// Whether `at` describes a row yet.
    learned: bool,
}

impl ColumnPositions {
    /// For each of `fields` in order, the index of the first cell of `row`
    /// named as its column, or `None` when `row` has no such cell: what
    /// `row.get(column)` finds.
    pub fn locate(&mut self, fields: &[FieldMap], row: &Row<'_>) -> &[Option<usize>] {
        if !(self.learned && self.hold_for(fields, row)) {
            self.learn(fields, row);
        }
        &self.at
    }

    /// Whether the learned positions are `row`'s: the same number of cells,
    /// each found column where it was, and no other cell named as any
    /// field's column (so a column that was absent still is, and no found
    /// column occurs earlier).
    fn hold_for(&self, fields: &[FieldMap], row: &Row<'_>) -> bool {
        let name = |i: usize| row.cells[i].0.as_ref();
        row.cells.len() == self.row_len
            && fields.iter().zip(&self.at).all(|(field, at)| match at {
                Some(i) => same_name(name(*i), &field.column),
                None => true,
            })
            && self.others.iter().all(|&i| {
                fields
                    .iter()
                    .all(|field| !same_name(name(i), &field.column))
            })
    }

    fn learn(&mut self, fields: &[FieldMap], row: &Row<'_>) {
        self.at.clear();
        self.at.extend(
            fields
                .iter()
                .map(|field| row.cells.iter().position(|(name, _)| *name == field.column)),
        );
        self.others.clear();
        let at = &self.at;
        self.others
            .extend((0..row.cells.len()).filter(|&i| !at.contains(&Some(i))));
        self.row_len = row.cells.len();
        self.learned = true;
    }
}

/// Whether two names are the same, compared eight bytes at a time.
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
    let (mut a_words, mut b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    a_words
        .by_ref()
        .zip(b_words.by_ref())
        .all(|(x, y)| word(x) == word(y))
        && a_words
            .remainder()
            .iter()
            .zip(b_words.remainder())
            .all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{Cell, Envelope};
    use crate::streams::FieldKind;

    fn fields(columns: &[&str]) -> Vec<FieldMap> {
        columns
            .iter()
            .map(|column| FieldMap::new("f", column, FieldKind::Text, ""))
            .collect()
    }

    /// Rows one after another as a page could bring them: the same
    /// columns, then some missing, added, moved, repeated or unknown.
    const ROWS: &[&str] = &[
        r#"{"a":"1","b":"2","c":"3"}"#,
        r#"{"a":"4","b":"5","c":"6"}"#,
        r#"{"a":"7","c":"8"}"#,
        r#"{"a":"9","c":"10"}"#,
        r#"{"a":"11","b":"12"}"#,
        r#"{"a":"13","x":"14"}"#,
        r#"{"a":"15","b":"16"}"#,
        r#"{"b":"17","a":"18","c":"19"}"#,
        r#"{"b":"20","b":"21","c":"22"}"#,
        r#"{"x":"23","b":"24","c":"25"}"#,
        r#"{"b":"26","b":"27","c":"28"}"#,
        r#"{"x":"29","y":"30","z":"31"}"#,
        r#"{"c":"32","y":"33","z":"34"}"#,
        r#"{}"#,
        r#"{"a":"35","b":"36","c":"37"}"#,
    ];

    #[test]
    fn names_are_the_same_only_when_every_byte_is() {
        let name = "abcdefghijklmnopqrstu";
        for len in 0..=name.len() {
            let a = &name[..len];
            assert!(same_name(a, a), "{a}");
            for at in 0..len {
                let mut b = a.as_bytes().to_vec();
                b[at] = b'_';
                assert!(
                    !same_name(a, std::str::from_utf8(&b).unwrap()),
                    "{a} at {at}"
                );
            }
            if len > 0 {
                assert!(!same_name(a, &name[..len - 1]), "{a} against a prefix");
            }
        }
    }

    #[test]
    fn each_row_gets_what_looking_its_columns_up_by_name_finds() {
        let body = format!(r#"{{"result":[{}]}}"#, ROWS.join(","));
        let rows = serde_json::from_str::<Envelope>(&body)
            .unwrap()
            .result
            .unwrap();
        // Two fields may read one column (settings can map them so).
        let fields = fields(&["a", "b", "c", "b", "missing"]);
        let mut positions = ColumnPositions::default();
        for (n, row) in rows.iter().enumerate() {
            let located: Vec<Option<&Cell>> = positions
                .locate(&fields, row)
                .iter()
                .map(|at| at.map(|i| &row.cells[i].1))
                .collect();
            let looked_up: Vec<Option<&Cell>> = fields.iter().map(|f| row.get(&f.column)).collect();
            assert_eq!(located, looked_up, "row {n}: {}", ROWS[n]);
        }
    }
}
