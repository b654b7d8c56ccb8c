//! ServiceNow encoded queries (`sysparm_query`): parsing and evaluation.
//!
//! Supported: `= != > >= < <= IN NOT IN STARTSWITH ENDSWITH LIKE NOT LIKE
//! ISEMPTY ISNOTEMPTY`, `^` (and), `^OR` (or, binding to the neighbouring
//! condition), `^NQ` (a new OR'ed group), `ORDERBY` and `ORDERBYDESC`.
//! Conditions on columns the table does not have are ignored, as ServiceNow does.

use crate::data::{datetime_key, Row, Table, UNKNOWN_DATETIME};

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `IN`
    In,
    /// `NOT IN`
    NotIn,
    /// `STARTSWITH`
    StartsWith,
    /// `ENDSWITH`
    EndsWith,
    /// `LIKE` (contains)
    Like,
    /// `NOT LIKE`
    NotLike,
    /// `ISEMPTY`
    IsEmpty,
    /// `ISNOTEMPTY`
    IsNotEmpty,
}

/// One condition `column OP value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Column name.
    pub column: String,
    /// Operator.
    pub op: Op,
    /// Operand (empty for ISEMPTY/ISNOTEMPTY).
    pub value: String,
}

/// Bounds on `sys_id`: `(value, inclusive)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysIdRange {
    /// Lower bound.
    pub lower: Option<(String, bool)>,
    /// Upper bound.
    pub upper: Option<(String, bool)>,
}

/// A parsed encoded query: OR'ed groups of AND'ed clauses of OR'ed conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `^NQ`-separated groups; a row matches when any group matches.
    pub groups: Vec<Vec<Vec<Condition>>>,
    /// Order: column and whether descending.
    pub order: Vec<(String, bool)>,
}

// Longest operators first so `>=` is not read as `>`.
const OPERATORS: &[(&str, Op)] = &[
    ("NOT IN", Op::NotIn),
    ("NOT LIKE", Op::NotLike),
    ("ISNOTEMPTY", Op::IsNotEmpty),
    ("ISEMPTY", Op::IsEmpty),
    ("STARTSWITH", Op::StartsWith),
    ("ENDSWITH", Op::EndsWith),
    ("LIKE", Op::Like),
    ("IN", Op::In),
    ("!=", Op::Ne),
    (">=", Op::Ge),
    ("<=", Op::Le),
    ("=", Op::Eq),
    (">", Op::Gt),
    ("<", Op::Lt),
];

fn parse_condition(term: &str) -> Option<Condition> {
    // The column is the longest identifier prefix (dot-walks included) that is
    // directly followed by an operator; columns are lower case, operators not.
    for (i, ch) in term.char_indices().skip(1) {
        let rest = &term[i..];
        if let Some((op, value)) = OPERATORS
            .iter()
            .find_map(|(word, op)| rest.strip_prefix(word).map(|v| (*op, v)))
        {
            return Some(Condition {
                column: term[..i].to_string(),
                op,
                value: value.to_string(),
            });
        }
        if !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.') {
            return None;
        }
    }
    None
}

impl Query {
    /// Parses an encoded query. Unparseable terms are dropped, as ServiceNow
    /// ignores invalid parts of a query.
    pub fn parse(text: &str) -> Query {
        let mut q = Query::default();
        for group_text in text.split("^NQ") {
            let mut group: Vec<Vec<Condition>> = Vec::new();
            for term in group_text.split('^') {
                if term.is_empty() || term == "EQ" {
                    continue;
                }
                if let Some(col) = term.strip_prefix("ORDERBYDESC") {
                    q.order.push((col.to_string(), true));
                } else if let Some(col) = term.strip_prefix("ORDERBY") {
                    q.order.push((col.to_string(), false));
                } else if let Some(or_term) = term.strip_prefix("OR") {
                    if let Some(c) = parse_condition(or_term) {
                        match group.last_mut() {
                            Some(last) => last.push(c),
                            None => group.push(vec![c]),
                        }
                    }
                } else if let Some(c) = parse_condition(term) {
                    group.push(vec![c]);
                }
            }
            if !group.is_empty() {
                q.groups.push(group);
            }
        }
        q
    }

    /// Drops conditions and orderings on columns `table` does not have.
    pub fn restrict_to(mut self, table: &Table) -> Query {
        for group in &mut self.groups {
            for clause in group.iter_mut() {
                clause.retain(|c| table.column(&c.column).is_some());
            }
            group.retain(|clause| !clause.is_empty());
        }
        self.groups.retain(|g| !g.is_empty());
        self.order.retain(|(c, _)| table.column(c).is_some());
        self
    }

    /// The query with its columns looked up in `table` once, to test many rows.
    pub fn resolve<'q>(&'q self, table: &Table) -> ResolvedQuery<'q> {
        ResolvedQuery {
            groups: self
                .groups
                .iter()
                .map(|group| {
                    group
                        .iter()
                        .map(|clause| {
                            clause
                                .iter()
                                .map(|c| (ColumnAt::of(table, &c.column), c))
                                .collect()
                        })
                        .collect()
                })
                .collect(),
        }
    }

    /// When the query is nothing but `sys_id` comparisons (one group, no
    /// ORs), the matching rows are a contiguous range of a table sorted by
    /// sys_id: returns (lower, upper) bounds, each `(value, inclusive)`.
    pub fn sys_id_range(&self) -> Option<SysIdRange> {
        let mut range = SysIdRange::default();
        match self.groups.as_slice() {
            [] => return Some(range),
            [group] => {
                for clause in group {
                    let [c] = clause.as_slice() else { return None };
                    if c.column != "sys_id" {
                        return None;
                    }
                    let v = c.value.clone();
                    match c.op {
                        Op::Gt | Op::Ge => {
                            let b = (v, c.op == Op::Ge);
                            if range
                                .lower
                                .as_ref()
                                .is_none_or(|l| b.0 > l.0 || (b.0 == l.0 && !b.1))
                            {
                                range.lower = Some(b);
                            }
                        }
                        Op::Lt | Op::Le => {
                            let b = (v, c.op == Op::Le);
                            if range
                                .upper
                                .as_ref()
                                .is_none_or(|u| b.0 < u.0 || (b.0 == u.0 && !b.1))
                            {
                                range.upper = Some(b);
                            }
                        }
                        _ => return None,
                    }
                }
            }
            _ => return None,
        }
        Some(range)
    }

    /// Bounds on `sys_updated_on` that every matching row meets: in a
    /// one-group query, the `>`, `>=`, `<` and `<=` clauses of that column
    /// alone whose operand is a date-time. Lets a scan test the table's
    /// date-time column ([`Table::updated_key_at`]) before a row's text.
    pub fn updated_on_bounds(&self) -> Vec<UpdatedBound> {
        let [group] = self.groups.as_slice() else {
            return Vec::new();
        };
        group
            .iter()
            .filter_map(|clause| match clause.as_slice() {
                [c] if c.column == "sys_updated_on"
                    && matches!(c.op, Op::Gt | Op::Ge | Op::Lt | Op::Le) =>
                {
                    datetime_key(&c.value).map(|key| UpdatedBound { op: c.op, key })
                }
                _ => None,
            })
            .collect()
    }

    /// The lowest `sys_id` a matching row can have, when every group bounds it
    /// from below: lets keyset reads start with a binary search instead of a scan.
    pub fn sys_id_lower_bound(&self) -> Option<(String, bool)> {
        self.sys_id_bound(Op::Gt, Op::Ge, |prev, new| prev <= new)
    }

    /// The highest `sys_id` a matching row can have, when every group bounds
    /// it from above: lets sys_id-range reads (partitions) stop scanning there.
    pub fn sys_id_upper_bound(&self) -> Option<(String, bool)> {
        self.sys_id_bound(Op::Lt, Op::Le, |prev, new| prev >= new)
    }

    /// A bound on `sys_id` from `strict`/`inclusive` conditions present in
    /// every group; across groups the loosest (`keep_prev(prev, new)` says
    /// whether the bound found so far is already looser).
    fn sys_id_bound(
        &self,
        strict: Op,
        inclusive: Op,
        keep_prev: fn(&str, &str) -> bool,
    ) -> Option<(String, bool)> {
        let mut bound: Option<(String, bool)> = None;
        for group in &self.groups {
            let b = group.iter().find_map(|clause| match clause.as_slice() {
                [c] if c.column == "sys_id" && c.op == strict => Some((c.value.clone(), false)),
                [c] if c.column == "sys_id" && c.op == inclusive => Some((c.value.clone(), true)),
                _ => None,
            })?;
            bound = Some(match bound {
                Some(prev) if keep_prev(&prev.0, &b.0) => prev,
                _ => b,
            });
        }
        bound
    }
}

/// A comparison of `sys_updated_on` with a date-time, on [`datetime_key`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatedBound {
    op: Op,
    key: u64,
}

impl UpdatedBound {
    /// Whether a row whose `sys_updated_on` has `key` may match: always when
    /// its value is not a date-time ([`UNKNOWN_DATETIME`]; the text decides).
    pub fn admits(&self, key: u64) -> bool {
        key == UNKNOWN_DATETIME
            || match self.op {
                Op::Gt => key > self.key,
                Op::Ge => key >= self.key,
                Op::Lt => key < self.key,
                _ => key <= self.key,
            }
    }
}

/// Where a column's value is in a table's rows.
#[derive(Debug, Clone, Copy)]
enum ColumnAt {
    /// The table lacks the column: its value is empty.
    Missing,
    /// Index from the start.
    Start(usize),
    /// Index from the end (for the columns nearer the end).
    End(usize),
}

impl ColumnAt {
    fn of(table: &Table, column: &str) -> ColumnAt {
        match table.column(column) {
            None => ColumnAt::Missing,
            Some(i) if i * 2 < table.columns.len() => ColumnAt::Start(i),
            Some(i) => ColumnAt::End(table.columns.len() - 1 - i),
        }
    }

    fn value(self, row: &Row) -> &str {
        match self {
            ColumnAt::Missing => "",
            ColumnAt::Start(i) => row.get(i),
            ColumnAt::End(back) => row.get_from_end(back),
        }
    }
}

/// A [`Query`]'s conditions with their columns located in one table.
#[derive(Debug, Clone)]
pub struct ResolvedQuery<'q> {
    groups: Vec<Vec<Vec<(ColumnAt, &'q Condition)>>>,
}

impl ResolvedQuery<'_> {
    /// Whether `row` matches.
    pub fn matches(&self, row: &Row) -> bool {
        self.groups.is_empty()
            || self.groups.iter().any(|group| {
                group.iter().all(|clause| {
                    clause
                        .iter()
                        .any(|(column, c)| c.matches(column.value(row)))
                })
            })
    }
}

impl Condition {
    /// Whether `value` satisfies the condition (string comparison, as for
    /// sys_ids and fixed-width date-times).
    pub fn matches(&self, value: &str) -> bool {
        let v = self.value.as_str();
        match self.op {
            Op::Eq => value == v,
            Op::Ne => value != v,
            Op::Gt => value > v,
            Op::Ge => value >= v,
            Op::Lt => value < v,
            Op::Le => value <= v,
            Op::In => v.split(',').any(|x| x == value),
            Op::NotIn => !v.split(',').any(|x| x == value),
            Op::StartsWith => value.to_lowercase().starts_with(&v.to_lowercase()),
            Op::EndsWith => value.to_lowercase().ends_with(&v.to_lowercase()),
            Op::Like => value.to_lowercase().contains(&v.to_lowercase()),
            Op::NotLike => !value.to_lowercase().contains(&v.to_lowercase()),
            Op::IsEmpty => value.is_empty(),
            Op::IsNotEmpty => !value.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operators() {
        let q = Query::parse("sys_id>abc^sys_updated_on>=2024-01-01 00:00:00^nameSTARTSWITHsrv^osISEMPTY^ORDERBYsys_id");
        let g = &q.groups[0];
        assert_eq!(
            g[0][0],
            Condition {
                column: "sys_id".into(),
                op: Op::Gt,
                value: "abc".into()
            }
        );
        assert_eq!(g[1][0].op, Op::Ge);
        assert_eq!(
            g[2][0],
            Condition {
                column: "name".into(),
                op: Op::StartsWith,
                value: "srv".into()
            }
        );
        assert_eq!(
            g[3][0],
            Condition {
                column: "os".into(),
                op: Op::IsEmpty,
                value: "".into()
            }
        );
        assert_eq!(q.order, vec![("sys_id".to_string(), false)]);
        let q = Query::parse("osINa,b^ORos=c^NQnameNOT LIKEx^subcategoryNOT INdb2,sql");
        assert_eq!(q.groups.len(), 2);
        assert_eq!(q.groups[0][0].len(), 2);
        assert_eq!(q.groups[1][0][0].op, Op::NotLike);
        assert_eq!(q.groups[1][1][0].column, "subcategory");
        assert_eq!(q.groups[1][1][0].op, Op::NotIn);
    }

    #[test]
    fn updated_on_bounds_agree_with_the_text() {
        let mut t = Table::new("t", &["sys_id", "name", "sys_updated_on"]);
        for (id, at) in [
            ("a", "2024-01-01 00:00:00"),
            ("b", "2024-01-02 00:00:00"),
            ("c", "2024-01-02 00:00:01"),
            ("d", "yesterday"),
            ("e", ""),
        ] {
            t.upsert(&[("sys_id", id.into()), ("sys_updated_on", at.into())]);
        }
        for text in [
            "sys_updated_on>=2024-01-02 00:00:00",
            "sys_updated_on>2024-01-02 00:00:00",
            "sys_updated_on<2024-01-02 00:00:00",
            "sys_updated_on<=2024-01-02 00:00:00^sys_updated_on>2024-01-01 00:00:00",
            "sys_updated_on>=2024",
        ] {
            let q = Query::parse(text).restrict_to(&t);
            let resolved = q.resolve(&t);
            let bounds = q.updated_on_bounds();
            let by_text: Vec<&str> = t
                .rows()
                .iter()
                .filter(|r| resolved.matches(r))
                .map(Row::key)
                .collect();
            let by_column: Vec<&str> = t
                .rows()
                .iter()
                .enumerate()
                .filter(|(i, _)| bounds.iter().all(|b| b.admits(t.updated_key_at(*i))))
                .filter(|(_, r)| resolved.matches(r))
                .map(|(_, r)| r.key())
                .collect();
            assert_eq!(by_column, by_text, "{text}");
        }
        assert_eq!(Query::parse("sys_updated_on>=2024").updated_on_bounds(), []);
        assert_eq!(
            Query::parse("sys_updated_on>=2024-01-01 00:00:00^NQname=x").updated_on_bounds(),
            []
        );
        // Rows the column rules out are not even read.
        let q = Query::parse("sys_updated_on>2024-01-02 00:00:00");
        let admitted = (0..t.rows().len())
            .filter(|i| {
                q.updated_on_bounds()
                    .iter()
                    .all(|b| b.admits(t.updated_key_at(*i)))
            })
            .count();
        assert_eq!(
            admitted, 3,
            "c, and d and e whose values are not date-times"
        );
    }

    #[test]
    fn evaluates_and_ignores_unknown_columns() {
        let mut t = Table::new("t", &["sys_id", "name"]);
        t.upsert(&[("sys_id", "a".into()), ("name", "alpha".into())]);
        t.upsert(&[("sys_id", "b".into()), ("name", "beta".into())]);
        let q = Query::parse("nameLIKEph^bogus=1").restrict_to(&t);
        let resolved = q.resolve(&t);
        let hits: Vec<_> = t.rows().iter().filter(|r| resolved.matches(r)).collect();
        assert_eq!(hits.len(), 1);
        assert_eq!(
            Query::parse("sys_id>a^ORDERBYsys_id").sys_id_lower_bound(),
            Some(("a".into(), false))
        );
        assert_eq!(Query::parse("sys_id>a^NQname=x").sys_id_lower_bound(), None);
        let r = Query::parse("sys_id>=a^sys_id<m^sys_id>b^ORDERBYsys_id")
            .sys_id_range()
            .unwrap();
        assert_eq!(r.lower, Some(("b".into(), false)));
        assert_eq!(r.upper, Some(("m".into(), false)));
        assert_eq!(Query::parse("sys_id>a^name=x").sys_id_range(), None);
        assert_eq!(
            Query::parse("sys_id>a^sys_id<m^sys_updated_on>=2025").sys_id_upper_bound(),
            Some(("m".into(), false))
        );
        assert_eq!(
            Query::parse("sys_id<=k^NQsys_id<m").sys_id_upper_bound(),
            Some(("m".into(), false))
        );
        assert_eq!(Query::parse("sys_id<m^NQname=x").sys_id_upper_bound(), None);
    }
}
