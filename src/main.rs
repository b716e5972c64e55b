#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    match taskcenter::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taskcenter: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
