//! Placement of finished outputs, one module per destination: the Pod claim directory
//! ([`claim_dir`]), Pod's database and REST API ([`pod`]), Moodle ([`moodle`]) and the CSV export
//! ([`csv`]), with the import jobs that run Pod and Moodle against the ledger ([`import`]).

pub mod claim_dir;
pub mod csv;
pub mod import;
pub mod moodle;
pub mod pod;
pub mod slug;
pub(crate) mod sql_dialect;

pub use claim_dir::{ClaimDir, PARTIAL, PlaceError, same_filesystem};
