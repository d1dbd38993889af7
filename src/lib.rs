//! The loyalty points platform: a multi-tenant gRPC service (package `points.v1`) over PostgreSQL.
//!
//! `main.rs` is a shim; everything lives here so the integration tests build the same [`app::Application`].
//! Layout: [`config`] and [`telemetry`] at start, [`store`] for SQL and migrations, [`domain`] for parsed
//! types, [`service`] for the units of work (each owns its transaction), [`auth`] for keys and the per-request
//! access check, [`grpc`] for the thin tonic adapters.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod call;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod pagination;
pub mod periodic;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tenancy;

/// Code generated from `proto/points/v1/*.proto`, by the contract crate.
pub use points_api::pb;
