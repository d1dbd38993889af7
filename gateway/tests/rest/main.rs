//! Gateway tests that need no real points server: the router is driven with `tower::ServiceExt::oneshot`, pointed
//! either at a closed port (every call that reaches the backend must give 503 / 50301) or at a fake `points.v1`
//! server started in-process on port 0.

mod admin;
mod backend;
mod bad_input;
mod docs;
mod helpers;
mod operations;
mod request_id;
mod serve;
