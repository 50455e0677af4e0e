//! How results reach stdout: `--output table` (aligned columns for people),
//! `json` (one JSON object per message, so a stream is JSON lines) or `id`
//! (just the id of each result, one per line, for scripts and pipes).
//!
//! Every line is flushed as it is written, so a stream shows each message
//! the moment it arrives, also through a pipe. Notes meant for a person
//! (the next page's token, "no products") go to stderr and never mix with
//! the data.

use std::io::Write as _;

use serde::Serialize;

/// What `--output` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns, money as "19.99 EUR", times in RFC 3339.
    Table,
    /// One JSON object per message (JSON lines for streams).
    Json,
    /// Only the id of each result (for login and register: the token).
    #[value(alias = "token")]
    Id,
}

/// The `--output` flag, shared by every RPC subcommand.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Output format: table, json (JSON lines for streams) or id (ids only,
    /// one per line; the token for login and register).
    #[arg(
        long,
        short = 'o',
        global = true,
        env = "SHOP_OUTPUT",
        value_enum,
        default_value_t = Format::Table
    )]
    pub output: Format,
}

/// Writes results to stdout in the chosen format.
#[derive(Debug)]
pub struct Printer {
    pub format: Format,
}

impl Printer {
    pub fn new(format: Format) -> Self {
        Printer { format }
    }

    /// One line of text, flushed.
    pub fn line(&self, text: &str) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
        out.flush()?;
        Ok(())
    }

    /// One JSON object on one line, flushed.
    pub fn json(&self, value: &impl Serialize) -> anyhow::Result<()> {
        self.line(&serde_json::to_string(value)?)
    }

    /// `key  value` lines with the keys aligned; empty values are left out.
    pub fn details(&self, pairs: &[(&str, String)]) -> anyhow::Result<()> {
        let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = std::io::stdout().lock();
        for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            writeln!(out, "{key:<width$}  {value}")?;
        }
        out.flush()?;
        Ok(())
    }

    /// A whole table at once, each column as wide as its widest cell.
    pub fn table(&self, table: &Table) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(table.render().as_bytes())?;
        out.flush()?;
        Ok(())
    }
}

/// Left or right alignment of a column (numbers and money go right).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table collected first and printed aligned: for replies that arrive in
/// one piece.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header and every row, columns two spaces apart, no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let columns: Vec<(usize, Align)> = widths
            .into_iter()
            .zip(self.columns.iter().map(|(_, a)| *a))
            .collect();
        let header: Vec<String> = self.columns.iter().map(|(h, _)| (*h).to_owned()).collect();
        let mut text = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            text.push_str(&format_row(&columns, row));
            text.push('\n');
        }
        text
    }
}

/// Rows printed one at a time as a stream delivers them, in columns of
/// fixed widths (a wider cell pushes the rest of its row right). The header
/// is printed with the first row.
#[derive(Debug)]
pub struct Rows {
    columns: Vec<(&'static str, usize, Align)>,
    printed: usize,
}

impl Rows {
    pub fn new(columns: &[(&'static str, usize, Align)]) -> Self {
        Rows {
            columns: columns.to_vec(),
            printed: 0,
        }
    }

    /// Prints `row` (after the header, the first time), flushed.
    pub fn print(&mut self, row: &[String]) -> anyhow::Result<()> {
        let columns: Vec<(usize, Align)> = self.columns.iter().map(|(_, w, a)| (*w, *a)).collect();
        let mut out = std::io::stdout().lock();
        if self.printed == 0 {
            let header: Vec<String> = self.columns.iter().map(|(h, ..)| (*h).to_owned()).collect();
            writeln!(out, "{}", format_row(&columns, &header))?;
        }
        writeln!(out, "{}", format_row(&columns, row))?;
        out.flush()?;
        self.printed += 1;
        Ok(())
    }

    /// How many rows were printed.
    pub fn count(&self) -> usize {
        self.printed
    }
}

fn format_row(columns: &[(usize, Align)], cells: &[String]) -> String {
    let mut line = String::new();
    for (i, ((width, align), cell)) in columns.iter().zip(cells).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        let pad = width.saturating_sub(cell.chars().count());
        match align {
            Align::Left => {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
            Align::Right => {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
    }
    line.truncate(line.trim_end().len());
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_to_the_widest_cell_without_trailing_spaces() {
        let mut table = Table::new(&[
            ("NAME", Align::Left),
            ("PRICE", Align::Right),
            ("CATEGORY", Align::Left),
        ]);
        table.push(vec!["Tea pot".into(), "39.50 EUR".into(), "kitchen".into()]);
        table.push(vec!["Mug".into(), "5.00 EUR".into(), "".into()]);

        assert_eq!(
            table.render(),
            "NAME         PRICE  CATEGORY\n\
             Tea pot  39.50 EUR  kitchen\n\
             Mug       5.00 EUR\n"
        );
    }

    #[test]
    fn fixed_width_rows_pad_every_column_but_the_last() {
        let columns = [(6, Align::Left), (4, Align::Right), (3, Align::Left)];
        let row = |cells: &[&str]| {
            format_row(
                &columns,
                &cells.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(row(&["ab", "1", "x"]), "ab         1  x");
        assert_eq!(row(&["abcdefgh", "12345", ""]), "abcdefgh  12345");
    }
}
