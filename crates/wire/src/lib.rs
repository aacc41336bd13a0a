//! What crewshipd and its clients agree on, so each is declared once: the
//! settings both sides read (where the daemon keeps its API token, where
//! it listens by default). Nothing here does I/O.

mod settings;

pub use settings::{
    API_TOKEN, API_TOKEN_FILE, DATA_DIR, DATA_DIR_DEFAULT, DEFAULT_URL, Setting, Shown, TOKEN_FILE_NAME, under_home,
};
