//! Entry point of the browser lab: install the panic hook and mount the app.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(infalign_web::App);
}
