//! A small static file server for `dist/`: correct MIME types (WebAssembly must be served as
//! `application/wasm`), no caching, and nothing fetched from elsewhere, so the page works offline.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tiny_http::{Header, Response, Server};

pub fn serve(dist: &Path, host: &str, port: u16) -> Result<()> {
    if !dist.join("index.html").exists() {
        bail!(
            "{} has no index.html: build the web app first (`cargo xtask build-web`)",
            dist.display()
        );
    }
    let server = Server::http((host, port))
        .map_err(|error| anyhow!("cannot listen on {host}:{port}: {error}"))?;
    let address = server
        .server_addr()
        .to_ip()
        .context("the server has no IP address")?;
    println!("Serving {} at http://{address}/", dist.display());
    println!("Open http://{address}/ in a browser (Ctrl-C stops the server).");
    for request in server.incoming_requests() {
        let response_path = resolve(dist, request.url());
        let result = match response_path.and_then(|path| File::open(&path).ok().map(|f| (path, f)))
        {
            Some((path, file)) => request.respond(
                Response::from_file(file)
                    .with_header(header("Content-Type", mime_type(&path)))
                    .with_header(header("Cache-Control", "no-store")),
            ),
            None => request.respond(Response::from_string("not found").with_status_code(404)),
        };
        if let Err(error) = result {
            eprintln!("serve: could not answer a request: {error}");
        }
    }
    Ok(())
}

/// Map a request URL to a file under `dist`, refusing anything that would leave it.
fn resolve(dist: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|part| !matches!(part, Component::Normal(_)))
    {
        return None;
    }
    let full = dist.join(relative);
    if full.is_dir() {
        Some(full.join("index.html"))
    } else {
        Some(full)
    }
}

fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header names are valid")
}
