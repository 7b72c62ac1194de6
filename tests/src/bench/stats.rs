//! Median, min and max over repeated runs, formatted for the table.

/// Median, min and max of one measurement over the runs that produced it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

/// None for no values. The median of an even count is the mean of the two
/// middle values.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let (&min, &max) = (sorted.first()?, sorted.last()?);
    let mid = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    };
    Some(Summary {
        median,
        min,
        max,
        count: sorted.len(),
    })
}

/// How a value is shown.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Seconds, shown as seconds with 3 decimals.
    Seconds,
    /// Seconds, shown as milliseconds.
    Millis,
    /// A count.
    Count,
    /// KiB, shown as MiB.
    KibAsMib,
    /// Seconds, shown as ms below one second and as seconds above.
    Span,
}

pub fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Seconds => format!("{value:.3} s"),
        Unit::Millis => format!("{:.0} ms", value * 1000.0),
        Unit::Count => format!("{value:.0}"),
        Unit::KibAsMib => format!("{:.1} MiB", value / 1024.0),
        Unit::Span if value < 1.0 => format!("{:.0} ms", value * 1000.0),
        Unit::Span => format!("{value:.2} s"),
    }
}

/// A value in a range, without its unit where the unit is fixed.
fn bare(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Seconds => format!("{value:.3}"),
        Unit::Millis => format!("{:.0}", value * 1000.0),
        Unit::Count => format!("{value:.0}"),
        Unit::KibAsMib => format!("{:.1}", value / 1024.0),
        Unit::Span => format_value(value, unit),
    }
}

/// `median (min–max)`, or just the value when all runs agree or there was one.
pub fn format_summary(s: &Summary, unit: Unit) -> String {
    let median = format_value(s.median, unit);
    let (lo, hi) = (bare(s.min, unit), bare(s.max, unit));
    if s.count == 1 || lo == hi {
        median
    } else {
        format!("{median} ({lo}–{hi})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap_or_else(|| panic!("values given"));
        assert_eq!((s.median, s.min, s.max, s.count), (2.0, 1.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap_or_else(|| panic!("values given"));
        assert_eq!(s.median, 2.5);
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn formats_with_range_only_when_it_differs() {
        let s = Summary {
            median: 0.1234,
            min: 0.1,
            max: 0.2,
            count: 5,
        };
        assert_eq!(format_summary(&s, Unit::Seconds), "0.123 s (0.100–0.200)");
        assert_eq!(format_summary(&s, Unit::Millis), "123 ms (100–200)");
        let wide = Summary {
            median: 0.5,
            min: 0.005,
            max: 30.2,
            count: 3,
        };
        assert_eq!(format_summary(&wide, Unit::Span), "500 ms (5 ms–30.20 s)");
        let same = Summary {
            median: 0.0,
            min: 0.0,
            max: 0.0,
            count: 5,
        };
        assert_eq!(format_summary(&same, Unit::Count), "0");
    }
}
