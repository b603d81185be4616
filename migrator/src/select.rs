//! Record selection (spec 5 RECOMMENDED): a deterministic sort (start time descending, then
//! recordID) and then the filters `--record-id`, `--since`, `--until`, the 1-based `--min/--max`
//! window and `--limit`. The Python command indexed the server's order, which is arbitrary on BBB
//! and shifts on Scalelite when recordings are added; this order is stable.

use chrono::{DateTime, NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::recording::{RecordId, Recording};

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub record_ids: Vec<RecordId>,
    pub since_ms: Option<i64>,
    /// Exclusive upper bound.
    pub until_ms: Option<i64>,
    pub min: Option<usize>,
    pub max: Option<usize>,
    pub limit: Option<usize>,
}

/// Parses `--since`/`--until`: `YYYY-MM-DD` (a whole local day in `tz`) or RFC 3339.
/// Returns the instant for `since`, or the exclusive end for `until`.
pub fn parse_date(s: &str, tz: Tz, end_of_day: bool) -> Result<i64, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = if end_of_day {
            d.succ_opt().ok_or("date out of range")?
        } else {
            d
        };
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
        let t = tz
            .from_local_datetime(&midnight)
            .earliest()
            .ok_or_else(|| format!("{s}: no such local time in {tz}"))?;
        return Ok(t.timestamp_millis());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis() + i64::from(end_of_day))
        .map_err(|_| format!("{s:?} is neither YYYY-MM-DD nor an RFC 3339 time"))
}

pub fn sort(recs: &mut [Recording]) {
    recs.sort_by(|a, b| {
        b.start_time_ms
            .cmp(&a.start_time_ms)
            .then_with(|| a.record_id.cmp(&b.record_id))
    });
}

/// Sorts and filters. Returns the selection and the requested ids that the server did not list.
pub fn select(mut recs: Vec<Recording>, f: &Filter) -> (Vec<Recording>, Vec<RecordId>) {
    sort(&mut recs);
    let missing: Vec<RecordId> = f
        .record_ids
        .iter()
        .filter(|id| !recs.iter().any(|r| &r.record_id == *id))
        .cloned()
        .collect();
    let min = f.min.unwrap_or(1).max(1);
    let max = f.max.unwrap_or(usize::MAX);
    let picked = recs
        .into_iter()
        .filter(|r| f.record_ids.is_empty() || f.record_ids.contains(&r.record_id))
        .filter(|r| f.since_ms.is_none_or(|s| r.start_time_ms >= s))
        .filter(|r| f.until_ms.is_none_or(|u| r.start_time_ms < u))
        .enumerate()
        .filter(|(i, _)| (min..=max).contains(&(i + 1)))
        .map(|(_, r)| r)
        .take(f.limit.unwrap_or(usize::MAX))
        .collect();
    (picked, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rec(id: &str, t: i64) -> Recording {
        Recording {
            record_id: RecordId::parse(id).unwrap(),
            meeting_id: String::new(),
            internal_meeting_id: id.into(),
            name: id.into(),
            published: "true".into(),
            state: "published".into(),
            start_time_ms: t,
            end_time_ms: None,
            metadata: BTreeMap::new(),
            formats: vec![],
        }
    }

    fn ids(v: &[Recording]) -> Vec<&str> {
        v.iter().map(|r| r.record_id.as_str()).collect()
    }

    #[test]
    fn deterministic_order_and_window() {
        let recs = vec![rec("b", 100), rec("a", 100), rec("c", 300), rec("d", 200)];
        let (all, _) = select(recs.clone(), &Filter::default());
        assert_eq!(ids(&all), ["c", "d", "a", "b"]);
        let (w, _) = select(
            recs.clone(),
            &Filter {
                min: Some(2),
                max: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(ids(&w), ["d", "a"]);
        let (l, _) = select(
            recs.clone(),
            &Filter {
                limit: Some(1),
                min: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(ids(&l), ["d"]);
        let (s, _) = select(
            recs.clone(),
            &Filter {
                since_ms: Some(150),
                until_ms: Some(300),
                ..Default::default()
            },
        );
        assert_eq!(ids(&s), ["d"]);
        let want = vec![
            RecordId::parse("a").unwrap(),
            RecordId::parse("zz").unwrap(),
        ];
        let (r, missing) = select(
            recs,
            &Filter {
                record_ids: want,
                ..Default::default()
            },
        );
        assert_eq!(ids(&r), ["a"]);
        assert_eq!(missing[0].as_str(), "zz");
    }

    #[test]
    fn dates_are_local_days() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // 2024-01-01 00:00 Paris = 2023-12-31 23:00 UTC.
        assert_eq!(
            parse_date("2024-01-01", paris, false).unwrap(),
            1704063600000
        );
        assert_eq!(
            parse_date("2023-12-31", paris, true).unwrap(),
            1704063600000
        );
        assert_eq!(
            parse_date("2024-01-01T00:00:00Z", paris, false).unwrap(),
            1704067200000
        );
        assert!(parse_date("yesterday", paris, false).is_err());
    }
}
