//! What the admin views show: stored daily rows with the usage not stored yet added in.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::store::{UsageFilter, UsageRow};

/// `stored` (already filtered by the query) plus the `pending` rows that match `filter`,
/// merged by (day, provider, model), oldest day first.
pub fn merge_pending(stored: Vec<UsageRow>, pending: Vec<UsageRow>, filter: &UsageFilter) -> Vec<UsageRow> {
    let mut by_key: BTreeMap<(NaiveDate, i64, String), UsageRow> = stored
        .into_iter()
        .map(|r| ((r.date, r.provider_id, r.model.clone()), r))
        .collect();
    for p in pending.into_iter().filter(|p| matches(filter, p)) {
        let key = (p.date, p.provider_id, p.model.clone());
        match by_key.get_mut(&key) {
            Some(row) => row.absorb(&p),
            None => {
                by_key.insert(key, p);
            }
        }
    }
    by_key.into_values().collect()
}

fn matches(f: &UsageFilter, p: &UsageRow) -> bool {
    f.provider_id.is_none_or(|id| id == p.provider_id)
        && f.model.as_ref().is_none_or(|m| *m == p.model)
        && f.from.is_none_or(|d| p.date >= d)
        && f.to.is_none_or(|d| p.date <= d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(provider_id: i64, day: u32, requests: i64) -> UsageRow {
        let date = NaiveDate::from_ymd_opt(2026, 12, day).unwrap();
        UsageRow {
            total_requests: requests,
            ..UsageRow::zero(provider_id, "m".into(), date, date.and_hms_opt(0, 0, 0).unwrap())
        }
    }

    #[test]
    fn pending_rows_add_to_stored_ones_and_respect_the_filter() {
        let filter = UsageFilter {
            provider_id: Some(1),
            ..Default::default()
        };
        let merged = merge_pending(
            vec![row(1, 2, 5)],
            vec![row(1, 2, 3), row(1, 3, 1), row(2, 2, 100)],
            &filter,
        );
        let totals: Vec<i64> = merged.iter().map(|r| r.total_requests).collect();
        assert_eq!(
            totals,
            vec![8, 1],
            "the same day adds up, another day is its own row"
        );
    }
}
