//! Tests of the Xvfb supervisor against the real `Xvfb` and a real X client (`xdpyinfo`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use xvfb::{Error, Xvfb};

fn process_exists(pid: u32) -> bool {
    // A zombie still has a /proc entry; only count live processes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !process_exists(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn xdpyinfo(display: &str, xauthority: Option<&Path>) -> std::process::Output {
    let mut command = Command::new("xdpyinfo");
    command.args(["-display", display]).env_remove("XAUTHORITY");
    if let Some(path) = xauthority {
        command.env("XAUTHORITY", path);
    } else {
        // Point at an empty file so the caller's own cookies cannot be used.
        command.env("XAUTHORITY", "/dev/null");
    }
    command
        .output()
        .expect("xdpyinfo must be installed (Debian package x11-utils)")
}

#[test]
fn two_displays_get_different_numbers_and_accept_clients() {
    let a = Xvfb::new(640, 480).start().expect("start first display");
    let b = Xvfb::new(800, 600).start().expect("start second display");
    assert_ne!(a.number(), b.number());
    assert_eq!(a.name(), format!(":{}", a.number()));

    for (display, size) in [(&a, "640x480"), (&b, "800x600")] {
        let out = xdpyinfo(display.name(), Some(display.xauthority()));
        assert!(
            out.status.success(),
            "xdpyinfo on {} failed: {}",
            display.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("dimensions:    {size} pixels")),
            "{text}"
        );
        assert!(
            text.contains("depth of root window:    24 planes"),
            "{text}"
        );
    }
    a.stop().expect("stop a");
    b.stop().expect("stop b");
}

#[test]
fn clients_without_the_cookie_are_refused() {
    let display = Xvfb::new(320, 240).start().expect("start");
    let out = xdpyinfo(display.name(), None);
    assert!(
        !out.status.success(),
        "a client without the cookie connected to {}",
        display.name()
    );
    let out = xdpyinfo(display.name(), Some(display.xauthority()));
    assert!(out.status.success());
}

#[test]
fn server_is_gone_after_stop() {
    let display = Xvfb::new(320, 240).start().expect("start");
    let pid = display.pid();
    let name = display.name().to_owned();
    assert!(process_exists(pid));
    display.stop().expect("stop");
    assert!(wait_gone(pid), "Xvfb {pid} still running after stop");
    let socket = format!("/tmp/.X11-unix/X{}", &name[1..]);
    assert!(!Path::new(&socket).exists(), "{socket} left behind");
}

#[test]
fn server_is_gone_after_drop_and_after_a_panic() {
    let display = Xvfb::new(320, 240).start().expect("start");
    let pid = display.pid();
    drop(display);
    assert!(wait_gone(pid), "Xvfb {pid} still running after drop");

    let pid = std::thread::spawn(|| {
        let display = Xvfb::new(320, 240).start().expect("start");
        let pid = display.pid();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _display = display;
            panic!("simulated failure while the display is in use");
        }));
        assert!(result.is_err());
        pid
    })
    .join()
    .unwrap();
    assert!(wait_gone(pid), "Xvfb {pid} still running after a panic");
}

#[test]
fn a_killed_server_is_reported_as_such() {
    let mut display = Xvfb::new(320, 240).start().expect("start");
    display.check().expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(display.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let error = loop {
        match display.check() {
            Err(e) => break e,
            Ok(()) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(()) => panic!("killed Xvfb still reported as running"),
        }
    };
    match &error {
        Error::Died {
            display: name, how, ..
        } => {
            assert_eq!(name, display.name());
            assert_eq!(how, "killed by SIGKILL");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(error.to_string().contains("killed by SIGKILL"));
    // Seen dead but not reaped: its PID, which is also its process group's ID, stays reserved
    // (a zombie) until the last SIGKILL to the group, so that signal can never reach another
    // group that reused the number.
    let pid = display.pid();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("a zombie entry");
    assert!(
        stat.rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z'),
        "{stat}"
    );
    // Stopping a dead server reports the death too, and collects it.
    assert!(matches!(display.stop(), Err(Error::Died { .. })));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "reaped after the stop"
    );
}

#[test]
fn a_missing_binary_names_the_debian_package() {
    let error = Xvfb::new(320, 240)
        .program("/nonexistent/Xvfb")
        .start()
        .expect_err("must fail");
    assert!(matches!(error, Error::NotInstalled { .. }), "{error:?}");
    assert!(
        error.to_string().contains("apt-get install xvfb"),
        "{error}"
    );
}

#[test]
fn bad_arguments_are_rejected_before_starting() {
    assert!(matches!(
        Xvfb::new(0, 10).start(),
        Err(Error::InvalidSize { .. })
    ));
    assert!(matches!(
        Xvfb::new(10, 10).depth(12).start(),
        Err(Error::InvalidDepth(12))
    ));
}

#[test]
fn a_server_that_exits_at_once_is_a_start_failure_with_its_stderr() {
    // `false` exits at once without writing a display number: the ready pipe sees EOF.
    let error = Xvfb::new(320, 240)
        .program("/bin/false")
        .start()
        .expect_err("must fail");
    match error {
        Error::StartFailed { how, .. } => assert_eq!(how, "exited with code 1"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_server_dies_with_its_supervisor() {
    // A supervisor process killed with SIGKILL runs no destructor: the kernel must still take
    // its Xvfb down (PR_SET_PDEATHSIG). The supervisor is this test binary re-run in a mode
    // that starts a display, writes its pid to a file and waits.
    if let Some(pid_file) = std::env::var_os("XVFB_TEST_SUPERVISOR_PID_FILE") {
        let display = Xvfb::new(320, 240).start().expect("start");
        std::fs::write(pid_file, display.pid().to_string()).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("xvfb.pid");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "the_server_dies_with_its_supervisor"])
        .env("XVFB_TEST_SUPERVISOR_PID_FILE", &pid_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "supervisor never reported its Xvfb"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(process_exists(pid));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_gone(pid),
        "Xvfb {pid} survived its SIGKILLed supervisor"
    );
}
