//! The migrations are embedded by `refinery::embed_migrations!`, which cargo does not track by itself; this tells it
//! to rebuild when they change. (The protos are compiled once, by the `points-api` crate.)

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
