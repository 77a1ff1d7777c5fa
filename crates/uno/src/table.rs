//! Plain-text tables for the listing commands (`keys list`, `snapshot list`).

/// `header` and `rows` as left-aligned columns two spaces apart, each line
/// without trailing spaces.
pub fn render<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_and_lines_end_without_spaces() {
        let header = ["A".to_owned(), "LONGER".to_owned()];
        let rows = [["wide cell".to_owned(), String::new()]];
        assert_eq!(
            super::render(&header, &rows),
            "A          LONGER\nwide cell\n"
        );
    }
}
