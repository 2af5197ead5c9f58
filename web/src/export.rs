//! Saving what the page shows: a chart as SVG, a table of results as CSV, handed to the browser
//! as a download (nothing leaves the machine).

use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
"#)]
extern "C" {
    fn download(name: &str, kind: &str, text: &str);
}

/// Offer `text` as the file `name` (CSV).
pub fn save_csv(name: &str, text: &str) {
    download(name, "text/csv;charset=utf-8", text);
}

/// Offer `svg` as the file `name`.
pub fn save_svg(name: &str, svg: &str) {
    download(name, "image/svg+xml;charset=utf-8", svg);
}
