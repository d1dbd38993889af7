//! Integration tests: one binary, each test on its own freshly created PostgreSQL database.

mod helpers;
mod rules;
mod spine;
mod ledger;
mod ledger_model;
mod rest;
mod rest_audit;
