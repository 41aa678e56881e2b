//! Dates as mail and people write them, always in UTC (msgr keeps seconds since the Unix epoch).

use chrono::DateTime;

/// `Sun, 29 Nov 2026 10:21:30 +0000` (RFC 5322 §3.3), for `Date` and `Received` fields.
pub fn rfc5322(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%a, %-d %b %Y %H:%M:%S +0000")
        .to_string()
}

/// `2026-11-29 10:21:30`, for tables an operator reads (`msgr mail queue`).
pub fn utc_datetime(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5322_dates() {
        assert_eq!(rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(805_274_037), "Sun, 9 Jul 1995 07:13:57 +0000");
        assert_eq!(rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322(1_795_947_690), "Sun, 29 Nov 2026 10:21:30 +0000");
    }

    #[test]
    fn utc_datetimes() {
        assert_eq!(utc_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(utc_datetime(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_datetime(1_700_000_000), "2023-11-14 22:13:20");
    }
}
