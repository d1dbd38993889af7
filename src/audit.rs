//! What a call leaves for its audit record (SPEC §7). The handler fills [`CallNotes`] as it goes; the call layer
//! reads them once the call has finished.

/// Facts about one call, filled in by its handler.
#[derive(Debug, Clone, Default)]
pub struct CallNotes {
    /// blake3 of the encoded request message, hex.
    pub request_digest: Option<String>,
    /// The outcome, None until the handler finished.
    pub outcome: Option<crate::error::ErrorCode>,
    pub succeeded: bool,
    pub entry_ids: Vec<i64>,
    pub uid: Option<String>,
    /// Set when the handler wrote the audit record itself, in its own transaction.
    pub audited_in_transaction: bool,
}
