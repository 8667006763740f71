//! Where a home's database bytes go: `cargo run --release -p vaarta-node --example census -- HOME`
//! (the node must be down: the database is opened, never written). Prints one line per kind
//! of record (`SledStore::census`) and sled's size on disk.

use vaarta_node::{Home, SledStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: census HOME")?;
    let home = Home::new(dir);
    let store = SledStore::open(&home.db_path(), &home.storage_key()?)?;
    let rows = store.census()?;
    println!("| kind | records | key bytes | value bytes |");
    println!("|---|---:|---:|---:|");
    let (mut n, mut kb, mut vb) = (0, 0, 0);
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.kind, r.records, r.key_bytes, r.value_bytes
        );
        (n, kb, vb) = (n + r.records, kb + r.key_bytes, vb + r.value_bytes);
    }
    println!("| all | {n} | {kb} | {vb} |");
    println!("sled size_on_disk: {} bytes", store.size_on_disk());
    Ok(())
}
