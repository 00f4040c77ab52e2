//! `--plot FILE.png`: training and test loss (left) and accuracy (right) per epoch, drawn with
//! plotters' bitmap backend and a bundled font, so no system font library is needed.

use std::{path::Path, sync::Once};

use keras::Error;
use plotters::{coord::Shift, prelude::*, style::FontStyle};

use super::{EpochStats, file_error};

/// DejaVu Sans cut to printable ASCII (`font/LICENSE`).
const FONT: &[u8] = include_bytes!("font/DejaVuSans-ASCII.ttf");
const FAMILY: &str = "sans-serif";
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const TEST_COLOR: RGBColor = RGBColor(255, 127, 14);

/// Writes the curves of `history` (one entry per epoch) to the PNG `path`, under `title`.
pub fn write_png(path: &Path, title: &str, history: &[EpochStats]) -> Result<(), Error> {
    static REGISTER: Once = Once::new();
    let mut registered = true;
    REGISTER.call_once(|| registered = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if !registered {
        return Err(file_error(path, "the bundled font does not load"));
    }
    draw(path, title, history).map_err(|e| file_error(path, format!("cannot draw the plot: {e}")))
}

fn draw(path: &Path, title: &str, history: &[EpochStats]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, (FAMILY, 26))?;
    let (left, right) = root.split_horizontally(600);
    let series = |f: fn(&EpochStats) -> f64| history.iter().map(f).collect::<Vec<_>>();
    let (train_loss, test_loss) = (series(|e| e.train.loss), series(|e| e.test.loss));
    let top = train_loss.iter().chain(&test_loss).copied().fold(0.0, f64::max);
    panel(&left, "loss", "cross-entropy", (0.0, nice_top(top)), &train_loss, &test_loss)?;
    let (train_acc, test_acc) = (series(|e| e.train.accuracy), series(|e| e.test.accuracy));
    let bottom = train_acc.iter().chain(&test_acc).copied().fold(1.0, f64::min);
    panel(&right, "accuracy", "fraction correct", ((bottom * 10.0).floor() / 10.0, 1.0), &train_acc, &test_acc)?;
    root.present()?;
    Ok(())
}

/// A y-axis top a little above `value`, so the highest point is not on the frame.
fn nice_top(value: f64) -> f64 {
    if value > 0.0 && value.is_finite() { value * 1.08 } else { 1.0 }
}

fn panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    caption: &str,
    y_label: &str,
    (y_min, y_max): (f64, f64),
    train: &[f64],
    test: &[f64],
) -> Result<(), Box<dyn std::error::Error>> {
    let epochs = train.len() as u32;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0u32..epochs + 1, y_min..y_max)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_label)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .x_labels((epochs as usize + 2).min(12))
        .draw()?;
    for (name, values, color) in [("train", train, TRAIN_COLOR), ("test", test, TEST_COLOR)] {
        let points: Vec<(u32, f64)> = values.iter().enumerate().map(|(i, &v)| (i as u32 + 1, v)).collect();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(3)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(if caption == "loss" { SeriesLabelPosition::UpperRight } else { SeriesLabelPosition::LowerRight })
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
