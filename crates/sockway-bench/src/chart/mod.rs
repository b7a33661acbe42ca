//! Charts the harness draws itself: latency (log scale, ms) against offered load, one line
//! per series, one panel per workload, with axis labels and a legend, as a PNG.
//!
//! The pixels are drawn here on a plain RGB canvas with a built-in bitmap font (`font`) and
//! encoded by `png`; what the series are and where the file goes is the latency workload's
//! business.

mod font;
pub(crate) mod png;

/// One panel: a title and the series drawn in it.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    /// Drawn above the plot, e.g. `ROUND TRIP (SATURATES AT 17,066 MSG/S)`.
    pub(crate) title: String,
    /// The lines, drawn and listed in the legend in this order.
    pub(crate) series: Vec<Series>,
}

/// One line: points of (offered load in % of the saturating rate, latency in ms).
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// The legend's text.
    pub(crate) label: String,
    /// Line and marker colour.
    pub(crate) color: [u8; 3],
    /// Dashed line with hollow markers (baselines), rather than solid with filled ones.
    pub(crate) dashed: bool,
    /// The points, in order of offered load.
    pub(crate) points: Vec<(f64, f64)>,
}

/// Colours for up to three percentiles, in order (blue, orange, red).
pub(crate) const PERCENTILE_COLORS: [[u8; 3]; 3] = [[31, 119, 180], [230, 120, 0], [200, 30, 30]];

const PANEL_WIDTH: i64 = 660;
const PANEL_HEIGHT: i64 = 670;
const PLOT_LEFT: i64 = 90;
const PLOT_RIGHT: i64 = 30;
const PLOT_TOP: i64 = 80;
const PLOT_HEIGHT: i64 = 360;
/// Font pixels are drawn as squares of this many image pixels.
const SCALE: i64 = 2;
const BLACK: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [205, 205, 205];
const MINOR_GRID: [u8; 3] = [235, 235, 235];

/// The x axis: offered load in % of the saturating rate.
const X_MAX: f64 = 100.0;
const X_TICKS: [f64; 6] = [0.0, 25.0, 50.0, 75.0, 90.0, 100.0];

/// Draws `panels` side by side with the x-axis label `x_label` and returns the PNG.
pub(crate) fn latency_png(panels: &[Panel], x_label: &str) -> Vec<u8> {
    let count = panels.len().max(1) as i64;
    let mut canvas = Canvas::new(PANEL_WIDTH * count, PANEL_HEIGHT);
    for (index, panel) in panels.iter().enumerate() {
        draw_panel(&mut canvas, PANEL_WIDTH * index as i64, panel, x_label);
    }
    png::encode(canvas.width as u32, canvas.height as u32, &canvas.pixels)
}

/// An RGB image being drawn on; drawing outside it is clipped.
struct Canvas {
    width: i64,
    height: i64,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    fn new(width: i64, height: i64) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![255; (width * height * 3) as usize],
        }
    }

    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if (0..self.width).contains(&x) && (0..self.height).contains(&y) {
            let at = ((y * self.width + x) * 3) as usize;
            self.pixels[at..at + 3].copy_from_slice(&color);
        }
    }

    fn fill(&mut self, x: i64, y: i64, width: i64, height: i64, color: [u8; 3]) {
        for row in y..y + height {
            for column in x..x + width {
                self.set(column, row, color);
            }
        }
    }

    /// A line `thickness` pixels wide; dashed lines alternate 8 pixels on, 6 off.
    fn line(
        &mut self,
        from: (i64, i64),
        to: (i64, i64),
        color: [u8; 3],
        thickness: i64,
        dashed: bool,
    ) {
        let (dx, dy) = (to.0 - from.0, to.1 - from.1);
        let steps = dx.abs().max(dy.abs()).max(1);
        let offset = thickness / 2;
        for step in 0..=steps {
            if dashed && step % 14 >= 8 {
                continue;
            }
            let x = from.0 + dx * step / steps;
            let y = from.1 + dy * step / steps;
            self.fill(x - offset, y - offset, thickness, thickness, color);
        }
    }

    /// Draws `text` with its top-left corner at (x, y); returns its width.
    fn text(&mut self, x: i64, y: i64, text: &str, color: [u8; 3]) -> i64 {
        let mut left = x;
        for character in text.chars() {
            let rows = font::glyph_or_fallback(character);
            for (row, bits) in rows.iter().enumerate() {
                for column in 0..font::WIDTH {
                    if bits & (1 << (font::WIDTH - 1 - column)) != 0 {
                        self.fill(
                            left + column as i64 * SCALE,
                            y + row as i64 * SCALE,
                            SCALE,
                            SCALE,
                            color,
                        );
                    }
                }
            }
            left += text_advance();
        }
        left - x
    }
}

fn text_advance() -> i64 {
    (font::WIDTH as i64 + 1) * SCALE
}

fn text_width(text: &str) -> i64 {
    text.chars().count() as i64 * text_advance() - SCALE
}

/// The decades the y axis spans: from the one at or below the smallest value to the one at
/// or above the largest, at least one decade.
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for value in values.filter(|value| value.is_finite() && *value > 0.0) {
        low = low.min(value);
        high = high.max(value);
    }
    if !low.is_finite() {
        return (0, 1);
    }
    let low = low.log10().floor() as i32;
    let high = (high.log10().ceil() as i32).max(low + 1);
    (low, high)
}

/// `0.01`, `0.1`, `1`, `10`, `1000`.
fn decade_label(decade: i32) -> String {
    if decade < 0 {
        format!("{:.*}", decade.unsigned_abs() as usize, 10f64.powi(decade))
    } else {
        format!("{}", 10u64.pow(decade.unsigned_abs()))
    }
}

fn draw_panel(canvas: &mut Canvas, x0: i64, panel: &Panel, x_label: &str) {
    let left = x0 + PLOT_LEFT;
    let right = x0 + PANEL_WIDTH - PLOT_RIGHT;
    let (top, bottom) = (PLOT_TOP, PLOT_TOP + PLOT_HEIGHT);
    canvas.text(x0 + 20, 16, &panel.title, BLACK);
    canvas.text(x0 + 20, 48, "LATENCY, MS (LOG SCALE)", BLACK);

    let (low, high) = decades(
        panel
            .series
            .iter()
            .flat_map(|series| series.points.iter().map(|point| point.1)),
    );
    let y_of = |value: f64| -> i64 {
        let fraction = (value.max(1e-3).log10() - f64::from(low)) / f64::from(high - low);
        bottom - (fraction * PLOT_HEIGHT as f64).round() as i64
    };
    let x_of =
        |percent: f64| -> i64 { left + (percent / X_MAX * (right - left) as f64).round() as i64 };

    for decade in low..=high {
        let value = 10f64.powi(decade);
        if decade < high {
            for multiple in [2.0, 5.0] {
                let y = y_of(value * multiple);
                canvas.line((left, y), (right, y), MINOR_GRID, 1, false);
            }
        }
        let y = y_of(value);
        canvas.line((left, y), (right, y), GRID, 1, false);
        let label = decade_label(decade);
        canvas.text(left - 10 - text_width(&label), y - 7, &label, BLACK);
    }
    for percent in X_TICKS {
        let x = x_of(percent);
        canvas.line((x, top), (x, bottom), GRID, 1, false);
        canvas.line((x, bottom), (x, bottom + 6), BLACK, 1, false);
        let label = format!("{percent}");
        canvas.text(x - text_width(&label) / 2, bottom + 12, &label, BLACK);
    }
    canvas.line((left, top), (left, bottom), BLACK, 2, false);
    canvas.line((left, bottom), (right, bottom), BLACK, 2, false);
    let label_x = (left + right - text_width(x_label)) / 2;
    canvas.text(label_x, bottom + 38, x_label, BLACK);

    for series in &panel.series {
        let points: Vec<(i64, i64)> = series
            .points
            .iter()
            .map(|(percent, value)| (x_of(*percent), y_of(*value)))
            .collect();
        for pair in points.windows(2) {
            canvas.line(pair[0], pair[1], series.color, 2, series.dashed);
        }
        for point in &points {
            marker(canvas, *point, series.color, series.dashed);
        }
    }

    let mut y = bottom + 76;
    for series in &panel.series {
        canvas.line(
            (left, y + 7),
            (left + 44, y + 7),
            series.color,
            2,
            series.dashed,
        );
        marker(canvas, (left + 22, y + 7), series.color, series.dashed);
        canvas.text(left + 58, y, &series.label, BLACK);
        y += 22;
    }
}

/// A 9 × 9 square: filled, or hollow for dashed series.
fn marker(canvas: &mut Canvas, (x, y): (i64, i64), color: [u8; 3], hollow: bool) {
    canvas.fill(x - 4, y - 4, 9, 9, color);
    if hollow {
        canvas.fill(x - 2, y - 2, 5, 5, [255, 255, 255]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(png_pixels: &[u8], width: i64, x: i64, y: i64) -> [u8; 3] {
        let at = ((y * width + x) * 3) as usize;
        png_pixels[at..at + 3].try_into().unwrap()
    }

    #[test]
    fn decades_cover_the_values() {
        assert_eq!(decades([0.35, 64.0].into_iter()), (-1, 2));
        assert_eq!(decades([1.0, 1.0].into_iter()), (0, 1));
        assert_eq!(decades([0.0, f64::NAN].into_iter()), (0, 1));
        assert_eq!(decades([2.5, 7.0].into_iter()), (0, 1));
        assert_eq!(decade_label(-2), "0.01");
        assert_eq!(decade_label(0), "1");
        assert_eq!(decade_label(3), "1000");
    }

    #[test]
    fn series_are_drawn_where_their_points_are() {
        let panel = Panel {
            title: "ROUND TRIP".to_owned(),
            series: vec![Series {
                label: "GATEWAY P50".to_owned(),
                color: PERCENTILE_COLORS[0],
                dashed: false,
                points: vec![(25.0, 1.0), (90.0, 100.0)],
            }],
        };
        let png = latency_png(&[panel.clone(), panel], "OFFERED LOAD, % OF SATURATION");
        let (width, height) = png::dimensions(&png).unwrap();
        assert_eq!(
            (i64::from(width), i64::from(height)),
            (2 * PANEL_WIDTH, PANEL_HEIGHT)
        );

        // Redraw on a canvas to look at the pixels: the y axis spans 1 to 100 ms, so the
        // first point sits on the bottom axis line and the second on the top decade.
        let mut canvas = Canvas::new(PANEL_WIDTH, PANEL_HEIGHT);
        draw_panel(
            &mut canvas,
            0,
            &Panel {
                title: String::new(),
                series: vec![Series {
                    label: String::new(),
                    color: PERCENTILE_COLORS[2],
                    dashed: false,
                    points: vec![(25.0, 1.0), (90.0, 100.0)],
                }],
            },
            "",
        );
        let right = PANEL_WIDTH - PLOT_RIGHT;
        let x_of = |percent: f64| {
            PLOT_LEFT + (percent / 100.0 * (right - PLOT_LEFT) as f64).round() as i64
        };
        let red = PERCENTILE_COLORS[2];
        assert_eq!(
            pixel(
                &canvas.pixels,
                PANEL_WIDTH,
                x_of(25.0),
                PLOT_TOP + PLOT_HEIGHT
            ),
            red
        );
        assert_eq!(
            pixel(&canvas.pixels, PANEL_WIDTH, x_of(90.0), PLOT_TOP),
            red
        );
        // The line's midpoint.
        let (mid_x, mid_y) = ((x_of(25.0) + x_of(90.0)) / 2, PLOT_TOP + PLOT_HEIGHT / 2);
        assert_eq!(pixel(&canvas.pixels, PANEL_WIDTH, mid_x, mid_y), red);
        // Far from every line and label, the background stays white.
        assert_eq!(
            pixel(
                &canvas.pixels,
                PANEL_WIDTH,
                x_of(80.0),
                PLOT_TOP + PLOT_HEIGHT - 20
            ),
            [255, 255, 255]
        );
    }

    #[test]
    fn text_is_drawn_in_the_glyphs_pixels() {
        let mut canvas = Canvas::new(40, 20);
        let width = canvas.text(0, 0, "I-", BLACK);
        assert_eq!(width, 2 * text_advance());
        // `I` has its top bar from column 1 to 3; `-` is row 3, all five columns.
        assert_eq!(pixel(&canvas.pixels, 40, SCALE, 0), BLACK);
        assert_eq!(pixel(&canvas.pixels, 40, 0, 0), [255, 255, 255]);
        assert_eq!(pixel(&canvas.pixels, 40, text_advance(), 3 * SCALE), BLACK);
        assert_eq!(
            pixel(&canvas.pixels, 40, text_advance(), 0),
            [255, 255, 255]
        );
    }
}
