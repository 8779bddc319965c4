//! Reset periods for rate-limit windows and budgets: `30s`, `1m`, `5m`, `1h`, `1d`, `1w`, `1M`,
//! `1Q`, `1Y`. Seconds, minutes and hours are fixed windows aligned to their length since the
//! Unix epoch; days, weeks (Monday), months, quarters and years are calendar-aligned in UTC.

use std::fmt;
use std::str::FromStr;

/// A window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    count: u32,
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

const MS_PER_DAY: i64 = 86_400_000;

impl FromStr for Period {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
            format!("\"{text}\" has no unit; use e.g. 1m, 1h, 1d, 1w, 1M, 1Q, 1Y")
        })?;
        let (digits, unit) = text.split_at(split);
        let count = if digits.is_empty() {
            1
        } else {
            digits
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("\"{text}\": the count must be a positive number"))?
        };
        let unit = match unit {
            "s" => Unit::Second,
            "m" => Unit::Minute,
            "h" => Unit::Hour,
            "d" => Unit::Day,
            "w" => Unit::Week,
            "M" => Unit::Month,
            "Q" => Unit::Quarter,
            "Y" | "y" => Unit::Year,
            other => {
                return Err(format!(
                    "\"{text}\": unknown unit \"{other}\"; use s, m, h, d, w, M (month), Q (quarter) or Y (year)"
                ))
            }
        };
        Ok(Period { count, unit })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            Unit::Second => "s",
            Unit::Minute => "m",
            Unit::Hour => "h",
            Unit::Day => "d",
            Unit::Week => "w",
            Unit::Month => "M",
            Unit::Quarter => "Q",
            Unit::Year => "Y",
        };
        write!(f, "{}{unit}", self.count)
    }
}

impl Period {
    /// Longest accepted period, in years. `validate()` refuses longer ones; the window
    /// arithmetic treats a longer period that reached it anyway (a store written by an older
    /// gateway) as this long, so no window starts at year 0 or ends past the clock's range.
    pub const MAX_YEARS: u32 = 10;

    /// Whether this period is at most [`Period::MAX_YEARS`] long.
    pub fn is_within_max(&self) -> bool {
        self.count <= self.unit.max_count()
    }

    /// The count the window arithmetic uses: at most [`Period::MAX_YEARS`] of the unit.
    fn effective_count(&self) -> i64 {
        i64::from(self.count.min(self.unit.max_count()))
    }

    /// Start (Unix ms) of the window containing `now_ms`.
    pub fn window_start(&self, now_ms: i64) -> i64 {
        match self.unit {
            Unit::Second | Unit::Minute | Unit::Hour | Unit::Day | Unit::Week => {
                let len = self.fixed_length_ms();
                // Weeks start on Monday: the epoch was a Thursday, 3 days after a Monday.
                let offset = if self.unit == Unit::Week {
                    3 * MS_PER_DAY
                } else {
                    0
                };
                now_ms
                    .saturating_add(offset)
                    .div_euclid(len)
                    .saturating_mul(len)
                    .saturating_sub(offset)
            }
            Unit::Month | Unit::Quarter | Unit::Year => {
                let months_per = self.unit.months() * self.effective_count();
                let (year, month, _) = civil_from_days(now_ms.div_euclid(MS_PER_DAY));
                let index = year * 12 + (month - 1);
                let start = index.div_euclid(months_per) * months_per;
                days_from_civil(start.div_euclid(12), start.rem_euclid(12) + 1, 1)
                    .saturating_mul(MS_PER_DAY)
            }
        }
    }

    /// End (Unix ms, exclusive) of the window that starts at `start_ms`.
    pub fn window_end(&self, start_ms: i64) -> i64 {
        match self.unit {
            Unit::Month | Unit::Quarter | Unit::Year => {
                let months = self.unit.months() * self.effective_count();
                let (year, month, _) = civil_from_days(start_ms.div_euclid(MS_PER_DAY));
                let index = year * 12 + (month - 1) + months;
                days_from_civil(index.div_euclid(12), index.rem_euclid(12) + 1, 1)
                    .saturating_mul(MS_PER_DAY)
            }
            _ => start_ms.saturating_add(self.fixed_length_ms()),
        }
    }

    /// Length of a second-to-week window; at most [`MAX_DAYS`] days, so it cannot overflow.
    fn fixed_length_ms(&self) -> i64 {
        let unit_ms = match self.unit {
            Unit::Second => 1_000,
            Unit::Minute => 60_000,
            Unit::Hour => 3_600_000,
            Unit::Day => MS_PER_DAY,
            Unit::Week => 7 * MS_PER_DAY,
            _ => 30 * MS_PER_DAY,
        };
        unit_ms * self.effective_count()
    }
}

/// Ten years in days, leap days included.
const MAX_DAYS: u32 = Period::MAX_YEARS * 365 + Period::MAX_YEARS.div_ceil(4);

impl Unit {
    /// Months per unit (calendar units only).
    fn months(self) -> i64 {
        match self {
            Unit::Month => 1,
            Unit::Quarter => 3,
            _ => 12,
        }
    }

    /// How many of this unit fit in [`Period::MAX_YEARS`].
    fn max_count(self) -> u32 {
        match self {
            Unit::Second => MAX_DAYS * 86_400,
            Unit::Minute => MAX_DAYS * 1_440,
            Unit::Hour => MAX_DAYS * 24,
            Unit::Day => MAX_DAYS,
            Unit::Week => MAX_DAYS / 7,
            Unit::Month => Period::MAX_YEARS * 12,
            Unit::Quarter => Period::MAX_YEARS * 4,
            Unit::Year => Period::MAX_YEARS,
        }
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month 1-12, day 1-31)` for days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn at(year: i64, month: i64, day: i64, hour: i64, minute: i64) -> i64 {
        days_from_civil(year, month, day) * MS_PER_DAY + (hour * 60 + minute) * 60_000
    }

    fn period(text: &str) -> Period {
        text.parse().expect("valid period")
    }

    #[test]
    fn minutes_and_hours_align_to_their_length() {
        let now = at(2026, 11, 21, 12, 7) + 31_000;
        assert_eq!(period("1m").window_start(now), at(2026, 11, 21, 12, 7));
        assert_eq!(period("5m").window_start(now), at(2026, 11, 21, 12, 5));
        assert_eq!(period("1h").window_start(now), at(2026, 11, 21, 12, 0));
        assert_eq!(
            period("5m").window_end(at(2026, 11, 21, 12, 5)),
            at(2026, 11, 21, 12, 10)
        );
    }

    #[test]
    fn days_weeks_months_quarters_years_follow_the_calendar() {
        let now = at(2026, 11, 21, 12, 7); // a Saturday
        assert_eq!(period("1d").window_start(now), at(2026, 11, 21, 0, 0));
        assert_eq!(
            period("1w").window_start(now),
            at(2026, 11, 16, 0, 0),
            "Monday"
        );
        assert_eq!(period("1M").window_start(now), at(2026, 11, 1, 0, 0));
        assert_eq!(period("1Q").window_start(now), at(2026, 10, 1, 0, 0));
        assert_eq!(period("1Y").window_start(now), at(2026, 1, 1, 0, 0));
        assert_eq!(
            period("1M").window_end(at(2026, 12, 1, 0, 0)),
            at(2027, 1, 1, 0, 0)
        );
        assert_eq!(
            period("1Q").window_end(at(2026, 10, 1, 0, 0)),
            at(2027, 1, 1, 0, 0)
        );
        assert_eq!(
            period("1M").window_end(at(2028, 2, 1, 0, 0)),
            at(2028, 3, 1, 0, 0)
        );
    }

    #[test]
    fn civil_conversion_round_trips() {
        for days in (-1000..200_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn periods_up_to_ten_years_are_within_the_bound() {
        for text in ["10Y", "40Q", "120M", "521w", "3653d", "87672h", "1s", "1Y"] {
            assert!(period(text).is_within_max(), "{text}");
        }
        for text in [
            "11Y",
            "41Q",
            "121M",
            "522w",
            "3654d",
            "99999999Y",
            "4294967295s",
        ] {
            assert!(!period(text).is_within_max(), "{text}");
        }
    }

    #[test]
    fn a_period_past_the_bound_counts_as_ten_years_not_from_year_zero() {
        let now = at(2026, 11, 21, 12, 7);
        let huge = period("99999999Y");
        assert_eq!(huge.window_start(now), at(2020, 1, 1, 0, 0));
        assert_eq!(
            huge.window_end(huge.window_start(now)),
            at(2030, 1, 1, 0, 0)
        );
        let days = period("4294967295d");
        let start = days.window_start(now);
        assert!(start <= now && days.window_end(start) > now);
        assert!(days.window_end(start) - start <= i64::from(MAX_DAYS) * MS_PER_DAY);
    }

    #[test]
    fn window_arithmetic_never_overflows() {
        for unit in ["s", "m", "h", "d", "w", "M", "Q", "Y"] {
            for count in [1, 7, u32::MAX] {
                let p = period(&format!("{count}{unit}"));
                for now in [i64::MIN, -1, 0, at(2026, 11, 21, 12, 7), i64::MAX] {
                    let start = p.window_start(now);
                    let _ = p.window_end(start);
                }
                let now = at(2026, 11, 21, 12, 7);
                let start = p.window_start(now);
                assert!(start <= now && now < p.window_end(start), "{count}{unit}");
            }
        }
    }

    #[test]
    fn bad_periods_say_why() {
        assert!("".parse::<Period>().is_err());
        assert!("10".parse::<Period>().unwrap_err().contains("no unit"));
        assert!("1x".parse::<Period>().unwrap_err().contains("unknown unit"));
        assert!("0m".parse::<Period>().unwrap_err().contains("positive"));
        assert_eq!(period("1M").to_string(), "1M");
    }
}
