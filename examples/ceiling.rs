//! The benchmark's ceiling: a bare axum handler serving a static JSON body
//! of a given size. What the HTTP stack alone can do on this machine is the
//! baseline every list query is measured against.
#![forbid(unsafe_code)]

use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;
use axum::Router;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:18099".to_owned();
    let mut size = 2048usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs a value")?,
            "--size" => size = args.next().ok_or("--size needs a value")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let pad = size.saturating_sub(26);
    let body = Bytes::from(format!("{{\"count\":0,\"pad\":\"{}\"}}", "x".repeat(pad)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = Router::new().route(
            "/",
            get(move || {
                let body = body.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        );
        let l = tokio::net::TcpListener::bind(&listen).await?;
        axum::serve(l, app).await
    })?;
    Ok(())
}
