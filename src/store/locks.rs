//! The advisory locks of a fleet's shared database, in one list so no two
//! uses share a key ("crew" in ASCII, then a number).

/// Migrations, held for the whole run: several nodes starting at once
/// migrate once.
pub const MIGRATIONS: i64 = 0x6372_6577_0000;
/// Who gets an LLM series of their own (the provider cap).
pub const NEW_SERIES: i64 = 0x6372_6577_0001;
/// The start-up recount's repair.
pub const RECOUNT: i64 = 0x6372_6577_0002;
/// Pruning the fleet's event feed.
pub const EVENT_PRUNE: i64 = 0x6372_6577_0003;
/// The journal's archiving and retention sweep.
pub const JOURNAL_SWEEP: i64 = 0x6372_6577_0004;
