//! The thin layer over the Workers runtime: `#[event(fetch)]`, outbound
//! `Fetch` (region cores, Upstash), the Cache API, isolate memory, and
//! the live seat map's Durable Object (`live`).
//! Decisions are made by the pure modules of the crate; this layer only
//! moves bytes and keeps per-isolate state. Compiled for `wasm32` only.

mod cache;
mod controls;
mod directory;
mod handlers;
mod http;
mod live;
mod ops;
mod pages;
mod poll;
mod region;
mod state;
mod upstash;

use worker::{console_error, event, Context, Env, Request, Response, Result};

use crate::error::EdgeError;

/// Every request enters here.
#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let cfg = match state::config(&env) {
        Ok(cfg) => cfg,
        Err(e) => {
            // The operator sees which variable is wrong in the logs; the
            // client sees a plain 500.
            console_error!("edge configuration: {e}");
            return http::error(&EdgeError::internal());
        }
    };
    handlers::handle(req, env, cfg, &ctx).await
}
