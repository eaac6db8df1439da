//! Whether a parsed file may be stored: all or nothing by default. A file with any
//! quarantined row is rejected unless the caller accepts a share of bad rows
//! (`--accept-bad-rows 0.1%`, `[ingest] accept_bad_rows`); a file that ends inside a row is
//! incomplete and rejected whatever the share.
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use super::ParseSummary;

/// The share of a file's rows that may be quarantined while its other rows are stored, in
/// percent (0 to 100). The default, 0, accepts none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BadRowShare(Decimal);

impl BadRowShare {
    /// Accepts no bad row.
    pub const NONE: BadRowShare = BadRowShare(Decimal::ZERO);

    /// The share in percent.
    pub fn percent(&self) -> Decimal {
        self.0
    }

    /// Whether `bad` quarantined rows of `read` are within the share (exactly: no
    /// rounding).
    pub fn allows(&self, bad: u64, read: u64) -> bool {
        bad == 0 || Decimal::from(bad) * Decimal::ONE_HUNDRED <= self.0 * Decimal::from(read)
    }
}

impl FromStr for BadRowShare {
    type Err = String;

    /// `0` (none), or a percentage such as `0.1%` or `5%`, at most `100%`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let expected = || format!("{s:?}: expected 0 or a percentage such as 0.1%");
        let number = match t.strip_suffix('%') {
            Some(n) => n.trim(),
            None if t.parse::<Decimal>().is_ok_and(|d| d.is_zero()) => t,
            None => return Err(expected()),
        };
        let p: Decimal = number.parse().map_err(|_| expected())?;
        if p.is_sign_negative() || p > Decimal::ONE_HUNDRED {
            return Err(format!("{s:?}: a share must be between 0% and 100%"));
        }
        Ok(BadRowShare(p.normalize()))
    }
}

impl fmt::Display for BadRowShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0.normalize())
    }
}

/// What to do with a parsed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Store its lines (and its quarantined rows, within the accepted share).
    Store,
    /// Store nothing and replace nothing, for this reason.
    Reject(String),
}

/// The verdict on a parsed file under `share`.
pub fn verdict(summary: &ParseSummary, share: BadRowShare) -> Verdict {
    if let Some(line) = summary.truncated_at {
        return Verdict::Reject(format!(
            "the file ends inside the row at line {line}: it is incomplete (cut off or still \
             being written); an incomplete file is never stored, whatever --accept-bad-rows says"
        ));
    }
    let bad = summary.quarantined.len() as u64;
    if share.allows(bad, summary.rows_read) {
        return Verdict::Store;
    }
    let accepted = if share == BadRowShare::NONE {
        "no bad row is accepted without --accept-bad-rows".to_string()
    } else {
        format!("more than the accepted {share}")
    };
    Verdict::Reject(format!(
        "{bad} of {} rows could not be read, {accepted}",
        summary.rows_read
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::Quarantined;

    fn share(s: &str) -> BadRowShare {
        s.parse().unwrap()
    }

    fn summary(read: u64, bad: u64, truncated_at: Option<u64>) -> ParseSummary {
        ParseSummary {
            rows_read: read,
            quarantined: (0..bad)
                .map(|i| Quarantined {
                    line: i + 2,
                    column: None,
                    reason: "x".into(),
                    raw: String::new(),
                })
                .collect(),
            truncated_at,
            ..ParseSummary::default()
        }
    }

    #[test]
    fn shares_parse_as_percentages_and_name_the_input_when_wrong() {
        assert_eq!(share("0"), BadRowShare::NONE);
        assert_eq!(share("0%"), BadRowShare::NONE);
        assert_eq!(share(" 0.1% ").percent(), "0.1".parse::<Decimal>().unwrap());
        assert_eq!(share("100%").to_string(), "100%");
        assert_eq!(share("0.10%").to_string(), "0.1%");
        for bad in ["0.1", "5", "abc%", "-1%", "100.5%", ""] {
            let e = bad.parse::<BadRowShare>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn the_share_is_compared_exactly() {
        // 0.1% of 1000 rows is one row.
        assert!(share("0.1%").allows(1, 1000));
        assert!(!share("0.1%").allows(2, 1000));
        assert!(!share("0.1%").allows(1, 999));
        assert!(BadRowShare::NONE.allows(0, 1000));
        assert!(!BadRowShare::NONE.allows(1, 1_000_000_000));
        assert!(share("100%").allows(5, 5));
    }

    #[test]
    fn bad_rows_reject_unless_accepted_and_an_incomplete_file_always_does() {
        assert_eq!(
            verdict(&summary(1000, 0, None), BadRowShare::NONE),
            Verdict::Store
        );
        let Verdict::Reject(why) = verdict(&summary(1000, 3, None), BadRowShare::NONE) else {
            panic!("three bad rows are rejected by default");
        };
        assert!(why.starts_with("3 of 1000 rows"), "{why}");
        assert!(why.contains("--accept-bad-rows"), "{why}");
        assert_eq!(
            verdict(&summary(1000, 3, None), share("0.3%")),
            Verdict::Store
        );
        let Verdict::Reject(why) = verdict(&summary(1000, 4, None), share("0.3%")) else {
            panic!("over the share");
        };
        assert!(why.contains("more than the accepted 0.3%"), "{why}");
        let Verdict::Reject(why) = verdict(&summary(507, 1, Some(508)), share("100%")) else {
            panic!("an incomplete file is rejected whatever the share");
        };
        assert!(
            why.contains("line 508") && why.contains("incomplete"),
            "{why}"
        );
    }
}
