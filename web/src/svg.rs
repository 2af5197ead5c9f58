//! Charts that redraw in place. Setting a chart's SVG with `innerHTML` makes the browser throw
//! away and rebuild every node (hundreds per chart) and lay them out again: most of a redraw's
//! time. [`SvgFigure`] instead parses the new SVG off-document and copies only what differs
//! (mostly a polyline's `points` and a marker's position) into the nodes already on the page.

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

export function morph_inner_html(container, html) {
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

/// A `<figure>` showing the SVG in `svg`, updated in place when it changes.
#[component]
pub fn SvgFigure(
    /// The figure's id.
    id: &'static str,
    /// Its classes.
    class: &'static str,
    /// The SVG (an empty string shows nothing).
    #[prop(into)]
    svg: Signal<String>,
) -> impl IntoView {
    let figure = NodeRef::<html::Figure>::new();
    Effect::new(move |_| {
        let svg = svg.get();
        if let Some(figure) = figure.get() {
            crate::timing::timed("svg-morph", || morph_inner_html(figure.as_ref(), &svg));
        }
    });
    view! { <figure class=class id=id node_ref=figure></figure> }
}
