//! What crewshipd and its clients agree on, so each is declared once: the
//! entities as the API shows them (`types`) and its other answers (`answers`), their closed vocabularies and
//! state machines (`kinds`, `status`, `named`), the bodies clients send
//! (`requests`), the description's schemas of the input rules (`schema`),
//! and the settings both sides read (where the daemon keeps its API token,
//! where it listens by default). Nothing here does I/O.

pub mod answers;
pub mod kinds;
pub mod named;
pub mod requests;
pub mod schema;
mod settings;
pub mod status;
pub mod types;

pub use settings::{
    API_TOKEN, API_TOKEN_FILE, DATA_DIR, DATA_DIR_DEFAULT, DEFAULT_URL, Setting, Shown, TOKEN_FILE_NAME, under_home,
};
