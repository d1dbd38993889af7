//! Integration tests: one binary, each test on its own freshly created PostgreSQL database.

mod append_only;
mod audit;
mod binary;
mod bootstrap;
mod error_table;
mod helpers;
mod holds;
mod hostile;
mod hostile_grpc;
mod in_process;
mod lanes;
mod ledger;
mod ledger_model;
mod limits;
mod pooling;
mod reports;
mod resilience;
mod rest;
mod rest_audit;
mod rest_holds;
mod rules;
mod scopes;
mod spine;
