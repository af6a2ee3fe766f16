//! What the commands tell their user beside their output: hints that name
//! the binary as it can be run, and empty listings said on stderr.

/// How to run this binary again from a shell: `sealtrail` when that name
/// on `PATH` is this binary (after `cargo install`), otherwise its full
/// path (after `cargo run`, which puts nothing on `PATH`), so that a hint
/// works as pasted.
pub fn self_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "sealtrail".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| std::fs::canonicalize(dir.join("sealtrail")).is_ok_and(|p| p == me))
    });
    let text = me.display().to_string();
    if on_path {
        "sealtrail".into()
    } else if text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b)) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// An empty listing says so on stderr, so that stdout keeps only rows (or
/// `[]` where the listing is JSON) for scripts.
pub fn say_if_empty(empty: bool, message: &str) {
    if empty {
        eprintln!("{message}");
    }
}
