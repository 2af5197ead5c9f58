//! Charts that redraw in place. Setting a chart's SVG with `innerHTML` makes the browser throw
//! away and rebuild every node (hundreds per chart) and lay them out again: most of a redraw's
//! time. [`SvgFigure`] instead patches the nodes already on the page: when only a few lines of
//! the SVG text changed with the same tags (a moved curve or marker: `infalign_view::chart`
//! writes one or a few elements per line), it parses just those lines and copies their
//! attributes onto the elements they stand for; otherwise it parses the whole SVG off-document
//! and copies only what differs. The browser tests check the result equals a fresh parse.

use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
function morph(old, fresh) {
  for (const { name, value } of fresh.attributes) {
    if (old.getAttribute(name) !== value) old.setAttribute(name, value);
  }
  for (const { name } of [...old.attributes]) {
    if (!fresh.hasAttribute(name)) old.removeAttribute(name);
  }
  const kept = old.childNodes;
  const wanted = [...fresh.childNodes];
  wanted.forEach((node, i) => {
    const here = kept[i];
    if (!here) {
      old.appendChild(node);
    } else if (here.nodeType !== node.nodeType || here.nodeName !== node.nodeName) {
      old.replaceChild(node, here);
    } else if (node.nodeType === Node.ELEMENT_NODE) {
      morph(here, node);
    } else if (here.nodeValue !== node.nodeValue) {
      here.nodeValue = node.nodeValue;
    }
  });
  while (kept.length > wanted.length) old.removeChild(old.lastChild);
}

// Start tags on a line of the charts' SVG (one element or a few per line, never a tag split
// across lines): `<name`, not `</` or `<!`.
const startTags = (line) => (line.match(/<[a-zA-Z]/g) || []).length;
const tagSkeleton = (line) => (line.match(/<\/?[a-zA-Z]+/g) || []).join();

// The quick path: the same lines but a few, each with the same tags (a moved curve or marker):
// parse only those lines and patch the elements they stand for, found by document order.
function patchLines(container, oldHtml, html) {
  const before = oldHtml.split("\n");
  const after = html.split("\n");
  if (before.length !== after.length) return false;
  const changed = [];
  for (let i = 0; i < after.length; i++) {
    if (before[i] !== after[i]) {
      if (tagSkeleton(before[i]) !== tagSkeleton(after[i]) || i === 0) return false;
      changed.push(i);
    }
  }
  const svg = container.firstElementChild;
  const elements = svg.getElementsByTagName("*");
  let index = 0; // document-order index (below the <svg>) of the first element on line `line`
  let line = 1;
  const template = document.createElement("template");
  for (const i of changed) {
    for (; line < i; line++) index += startTags(before[line]);
    template.innerHTML = `<svg xmlns="http://www.w3.org/2000/svg">${after[i]}</svg>`;
    const parsed = template.content.firstElementChild.getElementsByTagName("*");
    for (let k = 0; k < parsed.length; k++) {
      const target = elements[index + k];
      if (!target || target.nodeName !== parsed[k].nodeName) return false;
    }
    // Morph the line's outermost elements (each carries its own subtree).
    for (const fresh of [...template.content.firstElementChild.children]) {
      let at = index;
      for (let k = 0; k < parsed.length; k++) if (parsed[k] === fresh) at = index + k;
      morph(elements[at], fresh);
    }
  }
  return true;
}

export function morph_inner_html(container, html) {
  const previous = container.__morphHtml;
  container.__morphHtml = html;
  if (previous !== undefined && container.childElementCount === 1 && patchLines(container, previous, html)) {
    return;
  }
  const template = document.createElement("template");
  template.innerHTML = html;
  const fresh = template.content;
  const old = container.firstElementChild;
  const next = fresh.firstElementChild;
  if (old && next && fresh.childElementCount === 1 && container.childElementCount === 1 &&
      old.nodeName === next.nodeName) {
    morph(old, next);
  } else {
    container.replaceChildren(fresh);
  }
}
"#)]
extern "C" {
    /// Make `container`'s content equal to `html`, keeping the nodes that stay.
    fn morph_inner_html(container: &JsValue, html: &str);
}

/// A `<figure>` showing the SVG in `svg`, updated in place when it changes, with what a reader
/// is looking at (`caption`) and a button that saves the chart as an SVG file.
#[component]
pub fn SvgFigure(
    /// The figure's id (also the saved file's name).
    id: &'static str,
    /// What the chart is called in words ("the Best-of-N win-rate chart"): the save button's
    /// accessible name says which chart it saves.
    name: &'static str,
    /// Its classes.
    class: &'static str,
    /// The SVG (an empty string shows nothing).
    #[prop(into)]
    svg: Signal<String>,
    /// What the chart shows, in a sentence or two for someone meeting it first.
    #[prop(optional)]
    caption: Option<&'static str>,
) -> impl IntoView {
    let figure = NodeRef::<html::Figure>::new();
    Effect::new(move |_| {
        let svg = svg.get();
        if let Some(figure) = figure.get() {
            crate::timing::timed("svg-morph", || morph_inner_html(figure.as_ref(), &svg));
        }
    });
    let empty = move || svg.with(String::is_empty);
    view! {
        <div class="chart-block">
            <figure class=class id=id node_ref=figure></figure>
            <div class="chart-notes" hidden=empty>
                {caption.map(|text| view! { <p class="caption">{text}</p> })}
                <button
                    class="link save-svg"
                    data-for=id
                    aria-label=format!("Save {name} as SVG")
                    on:click=move |_| svg.with_untracked(|svg| crate::export::save_svg(&format!("{id}.svg"), svg))
                >"Save as SVG"</button>
            </div>
        </div>
    }
}
