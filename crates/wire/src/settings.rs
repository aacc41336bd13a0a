//! Settings: a variable (and maybe a flag), its default and what it means.
//! The daemon reads every one of its own; the CLI reads the few it shares
//! with the daemon, from the same declarations.

use std::path::{Path, PathBuf};

/// One setting, declared once.
#[derive(Debug)]
pub struct Setting {
    pub var: &'static str,
    /// Its command-line flag, if it has one (`--host`).
    pub flag: Option<&'static str>,
    pub default: Shown,
    /// What it means, as the README's table and `--help` say it.
    pub help: &'static str,
}

/// A setting's default.
#[derive(Debug)]
pub enum Shown {
    /// A value, parsed as a given one would be.
    Value(&'static str),
    /// Worked out at start; the text says from what.
    Derived(&'static str),
    /// Unset.
    Unset,
}

impl Setting {
    /// Its row in the README's configuration table.
    pub fn readme_row(&self) -> String {
        let name = match self.flag {
            Some(flag) => format!("`{}` (`{flag}`)", self.var),
            None => format!("`{}`", self.var),
        };
        format!("| {name} | {} | {} |", self.shown_default(), self.help)
    }

    /// The default as the README and `--help` show it.
    pub fn shown_default(&self) -> String {
        match self.default {
            Shown::Value(v) => format!("`{v}`"),
            Shown::Derived(how) => how.to_string(),
            Shown::Unset => "unset".to_string(),
        }
    }
}

/// Where the daemon keeps its data, and the CLI finds the daemon's token.
pub const DATA_DIR: Setting = Setting {
    var: "CREWSHIP_DATA_DIR",
    flag: Some("--data-dir"),
    default: Shown::Value(DATA_DIR_DEFAULT),
    help: "data directory, created if missing",
};
pub const DATA_DIR_DEFAULT: &str = "~/.crewship";

/// A path as settings write it: `~/` is the user's home.
pub fn under_home(path: &str, home: &Path) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(path),
    }
}

pub const API_TOKEN: Setting = Setting {
    var: "CREWSHIP_API_TOKEN",
    flag: None,
    default: Shown::Unset,
    help: "the bearer token every `/api/v1` and `/ws` client sends; unset (and no token file): crewshipd's own, \
           created at first start in `<data dir>/api-token` (mode 0600) and read from there by the CLI",
};

pub const API_TOKEN_FILE: Setting = Setting {
    var: "CREWSHIP_API_TOKEN_FILE",
    flag: None,
    default: Shown::Unset,
    help: "a file holding the API token (wins over `CREWSHIP_API_TOKEN`)",
};

/// The daemon's own API token, in its data directory.
pub const TOKEN_FILE_NAME: &str = "api-token";

/// Where a client finds a daemon started with the default host and port.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_and_data_dir_are_the_ones_the_help_names() {
        assert!(API_TOKEN.help.contains(&format!("<data dir>/{TOKEN_FILE_NAME}")));
        assert_eq!(under_home(DATA_DIR_DEFAULT, Path::new("/home/u")), Path::new("/home/u/.crewship"));
        assert_eq!(under_home("/srv/crewship", Path::new("/home/u")), Path::new("/srv/crewship"));
        assert_eq!(
            DATA_DIR.readme_row(),
            "| `CREWSHIP_DATA_DIR` (`--data-dir`) | `~/.crewship` | data directory, created if missing |"
        );
    }
}
