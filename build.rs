// `sqlx::migrate!` embeds the migrations at compile time; without this, adding a migration file alone would
// not rebuild the binary, which would then start without it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
