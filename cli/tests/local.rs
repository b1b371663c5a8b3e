//! Commands run without a node: usage errors, `kith init`, and every API command when no node
//! is running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use util::{kith, kith_command, kith_in, run_command};

#[test]
fn no_running_node_is_one_line_and_exit_2() {
    let home = TempDir::new().unwrap();
    for args in [
        &["id"][..],
        &["peers"],
        &["contact", "list"],
        &["contact", "add", "12D3KooWAbc"],
        &["send", "bob", "hi"],
        &["history", "bob"],
        &["read", "bob"],
        &["watch"],
    ] {
        let run = kith_in(home.path(), args);
        run.assert_code(2);
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains("kith up"), "{args:?}: {run:?}");
    }
    // Also when the home does not even exist.
    let run = kith_in(&home.path().join("missing"), &["id"]);
    run.assert_code(2);
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("kith up"), "{run:?}");
}

#[test]
fn home_comes_from_kith_home_when_no_flag() {
    let env_home = TempDir::new().unwrap();
    let flag_home = TempDir::new().unwrap();
    let run = run_command(kith_command().env("KITH_HOME", env_home.path()).arg("id"));
    run.assert_code(2);
    assert!(
        run.stderr.contains(&env_home.path().display().to_string()),
        "{run:?}"
    );
    let run = run_command(
        kith_command()
            .env("KITH_HOME", env_home.path())
            .arg("--home")
            .arg(flag_home.path())
            .arg("id"),
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains(&flag_home.path().display().to_string()),
        "{run:?}"
    );
}

#[test]
fn bad_usage_exits_2() {
    kith(&[]).assert_code(2);
    kith(&["frobnicate"]).assert_code(2);
    kith(&["send", "bob"]).assert_code(2);
    kith(&["send", "bob", "hi", "--wait", "forever"]).assert_code(2);
    kith(&["send", "bob", "hi", "--timeout", "5"]).assert_code(2);
    kith(&["send", "bob", "hi", "--expire", "soon"]).assert_code(2);
    kith(&["history", "bob", "--limit", "-1"]).assert_code(2);
    kith(&["contact"]).assert_code(2);
    kith(&["--help"]).assert_code(0);
}

#[test]
fn up_refuses_a_bad_multiaddr() {
    let home = TempDir::new().unwrap();
    let run = kith_in(
        home.path(),
        &["up", "--listen", "127.0.0.1:4001", "--no-mdns"],
    );
    run.assert_code(2);
    assert!(run.stderr.contains("--listen"), "{run:?}");
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

#[test]
fn init_prints_its_result_and_keeps_files_private() {
    let home = TempDir::new().unwrap();
    let run = kith_in(home.path(), &["init", "--json", "--name", "alice"]);
    run.assert_code(0);
    let info = run.json();
    assert!(
        info["peer_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("12D3KooW")),
        "{info}"
    );
    assert_eq!(info["name"], "alice");
    let shown = PathBuf::from(info["home"].as_str().unwrap());
    assert_eq!(
        shown.canonicalize().unwrap(),
        home.path().canonicalize().unwrap()
    );
    let files = files_under(home.path());
    assert!(!files.is_empty(), "init created no file");
    for file in files {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
    }
}

#[test]
fn init_json_may_come_before_the_command() {
    let home = TempDir::new().unwrap();
    let run = kith(&["--json", "--home", home.path().to_str().unwrap(), "init"]);
    run.assert_code(0);
    let info = run.json();
    assert!(info["peer_id"].is_string() && info["name"].is_null() && info["home"].is_string());
}

#[test]
fn init_twice_is_refused() {
    let home = TempDir::new().unwrap();
    let first = kith_in(home.path(), &["init", "--json"]);
    first.assert_code(0);
    let second = kith_in(home.path(), &["init", "--json"]);
    second.assert_code(2);
    assert!(second.stdout.is_empty());
    assert_eq!(second.stderr.lines().count(), 1, "{second:?}");
    // Without --json too.
    let third = kith_in(home.path(), &["init", "--name", "mallory"]);
    third.assert_code(2);
    assert!(first.json()["peer_id"].is_string());
}

#[test]
fn init_refuses_an_invisible_name() {
    for name in ["\u{200b}\u{200b}", "   ", "\u{2066}\u{feff}"] {
        let home = TempDir::new().unwrap();
        let run = kith_in(home.path(), &["init", "--name", name]);
        run.assert_code(2);
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    }
}
