//! Progress bars for long commands.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` steps, starting at `position`.
pub fn steps_bar(len: u64, position: u64) -> ProgressBar {
    let bar = ProgressBar::new(len).with_position(position);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("a valid progress template"),
    );
    bar
}

/// A bar over `len` items of `unit` (prompts, samples).
pub fn items_bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  [{{elapsed_precise}} < {{eta_precise}}]"
        ))
        .expect("a valid progress template"),
    );
    bar
}

/// Print a line above the progress bar, or plainly when the bar is hidden (output not a
/// terminal), where indicatif would drop it.
pub fn say(progress: &ProgressBar, line: String) {
    if progress.is_hidden() {
        eprintln!("{line}");
    } else {
        progress.println(line);
    }
}
