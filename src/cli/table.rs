//! Human output of the CLI: tables whose columns line up whatever their contents, and
//! times as dates people read. (`-j` output is the API's JSON and never goes through
//! here.)

/// A text table: a header row and rows of cells, columns two spaces apart, each as
/// wide as its widest cell (counted in characters); the last column is not padded.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
    right: Vec<usize>,
}

impl Table {
    /// A table with this header row.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
            right: Vec::new(),
        }
    }

    /// Aligns column `col` (from 0) to the right, as numbers are.
    pub fn right(mut self, col: usize) -> Table {
        self.right.push(col);
        self
    }

    /// Adds a row; missing cells are empty, extra ones are kept.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines of text.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let mut out = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let mut line = String::new();
            for (c, w) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                let pad = w.saturating_sub(cell.chars().count());
                if c > 0 {
                    line.push_str("  ");
                }
                if self.right.contains(&c) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if c + 1 < columns {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push(line.trim_end().to_string());
        }
        out.join("\n")
    }
}

/// A Unix time in milliseconds as `2026-12-05 13:21:15 UTC`; `-` for 0 (never).
pub fn utc(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let (year, month, day, secs) = civil_utc(ms);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The proleptic Gregorian (year, month, day, seconds into the day) of a Unix time in
/// milliseconds, in UTC (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil_utc(ms: u64) -> (u64, u64, u64, u64) {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_their_contents() {
        let mut t = Table::new(&["NAME", "N", "NOTE"]).right(1);
        t.row(vec!["a-much-longer-name".into(), "7".into(), "x".into()]);
        t.row(vec!["b".into(), "1234".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME                   N  NOTE\n\
             a-much-longer-name     7  x\n\
             b                   1234"
        );
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.
        assert_eq!(utc(951_827_696_000), "2000-02-29 12:34:56 UTC");
        assert_eq!(utc(1_796_478_075_999), "2026-12-05 13:41:15 UTC");
    }
}
