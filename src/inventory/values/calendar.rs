//! When a scheduled job runs on a host: the systemd calendar syntax of `OnCalendar=`.

use std::time::Duration;

use super::checked_string;

/// A systemd calendar expression (`daily`, `Mon..Fri *-*-* 03:15`, `*-*-01 04:00:00`) in
/// the common forms, checked here because `systemd-analyze calendar` is not on every
/// controller: a shorthand, or weekdays, a date and a time, each optional, with `*`,
/// lists, ranges and repetitions in each field. Time zones, `~` (days from the end of a
/// month) and fractional seconds are refused. It is written into a timer unit as given,
/// and only its grammar's characters can reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar(String);

checked_string!(Calendar);

/// The shorthands systemd knows (`systemd.time(7)`).
const SHORTHANDS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
];

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl Calendar {
    /// Once a day, at midnight: the default schedule.
    pub fn daily() -> Calendar {
        Calendar("daily".into())
    }

    /// Once a week, Monday at midnight: the default schedule of the restore drill.
    pub fn weekly() -> Calendar {
        Calendar("weekly".into())
    }

    /// The longest time between two runs that the expression's form allows (a bound, not
    /// the exact gap: `0/6:00` is bounded by a day): `status` warns when the last good
    /// backup is older than two of these.
    pub fn period(&self) -> Duration {
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        let secs = match self.0.as_str() {
            "minutely" => 60,
            "hourly" => HOUR,
            "daily" => DAY,
            "weekly" => 7 * DAY,
            "monthly" => 31 * DAY,
            "quarterly" => 92 * DAY,
            "semiannually" => 184 * DAY,
            "yearly" | "annually" => 366 * DAY,
            expression => {
                let words: Vec<&str> = expression.split(' ').collect();
                let fixed = |field: Option<&str>| field.is_some_and(|f| f != "*");
                let date = words.iter().find(|w| w.contains('-'));
                let fields: Vec<&str> = date.map(|d| d.split('-').collect()).unwrap_or_default();
                // `M-D` or `Y-M-D`: the day is the last field, the month the one before.
                let day = fields.last().copied();
                let month = fields.len().checked_sub(2).map(|i| fields[i]);
                let year = (fields.len() == 3).then(|| fields[0]);
                let hour =
                    (words.iter().find(|w| w.contains(':'))).and_then(|t| t.split(':').next());
                if fixed(year) || fixed(month) {
                    366 * DAY
                } else if fixed(day) {
                    31 * DAY
                } else if words[0].starts_with(|c: char| c.is_ascii_alphabetic()) {
                    7 * DAY
                } else if hour == Some("*") {
                    HOUR
                } else {
                    DAY
                }
            }
        };
        Duration::from_secs(secs)
    }

    pub fn parse(text: &str) -> Result<Calendar, String> {
        super::no_control_characters(text)?;
        let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
        if words.is_empty() {
            return Err("it is empty".into());
        }
        if let [word] = words[..]
            && SHORTHANDS.contains(&word.to_ascii_lowercase().as_str())
        {
            return Ok(Calendar(word.to_ascii_lowercase()));
        }
        let mut rest = &words[..];
        if let [first, tail @ ..] = rest
            && first.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            weekdays(first)?;
            rest = tail;
        }
        if let [first, tail @ ..] = rest
            && first.contains('-')
        {
            date(first)?;
            rest = tail;
        }
        if let [first, tail @ ..] = rest
            && first.contains(':')
        {
            time(first)?;
            rest = tail;
        }
        match rest {
            [] => Ok(Calendar(words.join(" "))),
            [word, ..] => Err(format!(
                "`{word}` is not a weekday, a date (Y-M-D) or a time (H:M[:S]) where it stands; time zones are not taken (the host's local time is used)"
            )),
        }
    }
}

/// `Mon`, `Mon,Fri`, `Mon..Fri`, by their English names or first three letters.
fn weekdays(text: &str) -> Result<(), String> {
    let day = |name: &str| {
        let lower = name.to_ascii_lowercase();
        WEEKDAYS
            .iter()
            .any(|d| *d == lower || (lower.len() == 3 && d.starts_with(&lower)))
            .then_some(())
            .ok_or_else(|| format!("`{name}` is not a weekday (Mon, Tue, ... Sun)"))
    };
    for item in text.split(',') {
        match item.split_once("..") {
            Some((from, to)) => {
                day(from)?;
                day(to)?;
            }
            None => day(item)?,
        }
    }
    Ok(())
}

/// `[Y-]M-D`.
fn date(text: &str) -> Result<(), String> {
    let fields: Vec<&str> = text.split('-').collect();
    let ranges: &[(&str, u32, u32)] = match fields.len() {
        2 => &[("month", 1, 12), ("day", 1, 31)],
        3 => &[("year", 1970, 2199), ("month", 1, 12), ("day", 1, 31)],
        _ => return Err(format!("`{text}` is not a date: write Y-M-D or M-D")),
    };
    for (field, (what, low, high)) in fields.iter().zip(ranges) {
        component(field, what, *low, *high)?;
    }
    Ok(())
}

/// `H:M[:S]`.
fn time(text: &str) -> Result<(), String> {
    let fields: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&fields.len()) {
        return Err(format!("`{text}` is not a time: write H:M or H:M:S"));
    }
    let ranges = [("hour", 0, 23), ("minute", 0, 59), ("second", 0, 59)];
    for (field, (what, low, high)) in fields.iter().zip(ranges) {
        component(field, what, low, high)?;
    }
    Ok(())
}

/// One field: `*`, or a list of `N`, `N..M`, `N/STEP` and `*/STEP`, within `low..=high`.
fn component(text: &str, what: &str, low: u32, high: u32) -> Result<(), String> {
    let number = |n: &str, allow_star: bool| -> Result<(), String> {
        if allow_star && n == "*" {
            return Ok(());
        }
        match n.parse::<u32>() {
            Ok(v) if (low..=high).contains(&v) && n.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
            _ => Err(format!(
                "`{n}`: the {what} must be a number from {low} to {high}"
            )),
        }
    };
    if text == "*" {
        return Ok(());
    }
    for item in text.split(',') {
        let (start, step) = match item.split_once('/') {
            Some((start, step)) => (start, Some(step)),
            None => (item, None),
        };
        match start.split_once("..") {
            Some((from, to)) => {
                number(from, false)?;
                number(to, false)?;
            }
            None => number(start, step.is_some())?,
        }
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s) if s >= 1 && step.bytes().all(|b| b.is_ascii_digit()) => {}
                _ => {
                    return Err(format!(
                        "`{step}` is not a repetition (a whole number from 1)"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_bounds_the_gap_between_two_runs() {
        let days = |text: &str| Calendar::parse(text).unwrap().period().as_secs() as f64 / 86400.0;
        for (text, period) in [
            ("daily", 1.0),
            ("Weekly", 7.0),
            ("hourly", 1.0 / 24.0),
            ("*-*-* 03:00:00", 1.0),
            ("03:15", 1.0),
            ("0/6:00", 1.0),
            ("*:00", 1.0 / 24.0),
            ("Mon..Fri 03:15", 7.0),
            ("*-*-01 04:00", 31.0),
            ("*-12-24", 366.0),
            ("2027-*-* 00:00", 366.0),
        ] {
            assert_eq!(days(text), period, "{text}");
        }
    }

    #[test]
    fn the_common_forms_pass() {
        for (text, kept) in [
            ("daily", "daily"),
            ("Weekly", "weekly"),
            ("*-*-* 03:00:00", "*-*-* 03:00:00"),
            ("03:15", "03:15"),
            ("Mon..Fri  04:30", "Mon..Fri 04:30"),
            ("Sat,Sunday *-*-* 02:00", "Sat,Sunday *-*-* 02:00"),
            ("*-*-01 04:00:00", "*-*-01 04:00:00"),
            ("2027-01..06-1,15 0/6:00", "2027-01..06-1,15 0/6:00"),
            ("*:0/15", "*:0/15"),
            ("Mon", "Mon"),
        ] {
            assert_eq!(&*Calendar::parse(text).unwrap(), kept, "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        for (text, why) in [
            ("", "empty"),
            ("daily\nExecStart=/bin/sh", "control character"),
            ("*-*-* 03:00 Europe/Berlin", "time zones are not taken"),
            (
                "*-*-* 25:00",
                "`25`: the hour must be a number from 0 to 23",
            ),
            ("*-13-01", "`13`: the month must be"),
            ("*-02~03", "`02~03`: the day must be"),
            ("Funday 03:00", "`Funday` is not a weekday"),
            ("*-*-* 03:00:00.5", "`00.5`: the second must be"),
            ("*:*/0", "`0` is not a repetition"),
            ("1-2-3-4", "not a date"),
            ("03:00:00:00", "not a time"),
            ("*-*-* +3:00", "`+3`: the hour must be"),
        ] {
            let err = Calendar::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
