//! Unix seconds as the report prints them: a UTC civil date and time, to the minute.
//!
//! The report never reads a clock; every instant it shows is an input. The conversion is the
//! proleptic Gregorian calendar (days from 1970-01-01), done in i64 so that no input, however
//! absurd, overflows: an instant outside the years 0000–9999 is printed as its raw number
//! instead of a date that would look real.

/// A UTC civil date and time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// Seconds from 1970-01-01T00:00:00Z to 0000-01-01 and to 10000-01-01: the range a four-digit
/// year can show.
const MIN_UNIX: i64 = -62_167_219_200;
const MAX_UNIX_EXCLUSIVE: i64 = 253_402_300_800;

/// The civil UTC time of `unix` seconds, or `None` outside the years 0000–9999.
pub(crate) fn civil(unix: i64) -> Option<Civil> {
    if !(MIN_UNIX..MAX_UNIX_EXCLUSIVE).contains(&unix) {
        return None;
    }
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days, in eras of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(Civil {
        year: u16::try_from(year).ok()?,
        month: u8::try_from(month).ok()?,
        day: u8::try_from(day).ok()?,
        hour: u8::try_from(secs / 3_600).ok()?,
        minute: u8::try_from(secs % 3_600 / 60).ok()?,
        second: u8::try_from(secs % 60).ok()?,
    })
}

/// `YYYY-MM-DD HH:MM` (UTC, no suffix), or `unix N` when the instant has no four-digit year.
pub(crate) fn minute(unix: i64) -> String {
    match civil(unix) {
        Some(c) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute
        ),
        None => format!("unix {unix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(minute(0), "1970-01-01 00:00");
        assert_eq!(minute(951_782_400), "2000-02-29 00:00");
        assert_eq!(minute(1_796_315_640), "2026-12-03 16:34");
        assert_eq!(minute(-1), "1969-12-31 23:59");
        assert_eq!(minute(MIN_UNIX), "0000-01-01 00:00");
        assert_eq!(minute(MAX_UNIX_EXCLUSIVE - 1), "9999-12-31 23:59");
    }

    #[test]
    fn out_of_range_is_printed_raw_never_panics() {
        for unix in [i64::MIN, i64::MAX, MIN_UNIX - 1, MAX_UNIX_EXCLUSIVE] {
            assert_eq!(civil(unix), None);
            assert_eq!(minute(unix), format!("unix {unix}"));
        }
    }
}
