//! crewship: the operator CLI for crewshipd (its code is `crewship::cli`).

// One thread is plenty for a client that does one thing at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    crewship::cli::run().await
}
