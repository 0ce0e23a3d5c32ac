//! A seconds-long fan-out smoke run of the bench against a real nginx with
//! the Nchan module, configured by `nchan/nginx.conf` of this crate: the run
//! must be clean (nothing lost, duplicated or reordered) and every poller
//! must get every message. Timing is never asserted.
//!
//! Without nginx or the Nchan module the test says so and passes, except in
//! CI (`CI` set), where it fails, as the proxy tests of talk do.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use talk_bench::{PollTransport, Scenario, Target};
use talk_peers::Nchan;

/// Where Debian's `libnginx-mod-nchan` puts the module.
const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// An nginx master process in the foreground and its run directory; the
/// master is stopped (and stops its worker) and the directory removed when
/// dropped.
struct Nginx {
    master: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master must live to stop its worker.
        let pid = self.master.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.master.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.master.try_wait() {
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx and the Nchan module, or `None` after saying loudly that the test
/// skips (which fails in CI, where both must be there).
fn nginx_with_nchan() -> Option<PathBuf> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists());
    let missing = match &nginx {
        None => Some("nginx is not installed"),
        Some(_) if !Path::new(NCHAN_MODULE).exists() => Some("the Nchan module is not installed"),
        Some(_) => None,
    };
    if let Some(missing) = missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "{missing}, and CI requires it (apt-get install nginx-light libnginx-mod-nchan)"
        );
        eprintln!("SKIPPED nchan test: {missing} (apt-get install nginx-light libnginx-mod-nchan)");
        return None;
    }
    nginx
}

/// A bench target of an Nchan at `base_url`, with pollers in this process.
fn nchan_target(base_url: String, drain: Duration) -> Target {
    Target {
        base_url,
        server_pid: None,
        workers: 0,
        worker_program: None,
        source_ips: Vec::new(),
        transport: PollTransport::Raw,
        ramp_per_second: 1_000.0,
        wait_ms: None,
        sends_per_session: 4.0,
        leave_at_end: true,
        drain,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// Starts `nginx` with the repository's Nchan configuration on a free
    /// port of 127.0.0.1, and waits until it accepts connections.
    fn start(nginx: &Path) -> Nginx {
        let template_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("nchan/nginx.conf");
        let template = std::fs::read_to_string(&template_path)
            .unwrap_or_else(|error| panic!("{}: {error}", template_path.display()));
        let dir = std::env::temp_dir().join(format!(
            "talk-nchan-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = template
            .replace("@MODULE@", NCHAN_MODULE)
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@DIR@", dir.to_str().expect("a UTF-8 temporary directory"));
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let master = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut started = Nginx { master, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = started.master.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(started.dir.join("error.log")).unwrap_or_default();
                panic!("nginx did not start ({exited:?}): {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        started
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_through_nchan_loses_nothing() {
    let Some(nginx) = nginx_with_nchan() else {
        return;
    };
    let server = Nginx::start(&nginx);
    let target = nchan_target(
        format!("http://127.0.0.1:{}", server.port),
        Duration::from_secs(20),
    );
    support::fanout_loses_nothing::<Nchan>(&target, 200, 20, Duration::from_millis(50)).await;
}

/// A talk-only scenario is refused against Nchan rather than run wrong.
#[tokio::test]
async fn only_fanout_drives_nchan() {
    let target = nchan_target("http://127.0.0.1:9".into(), Duration::from_secs(1));
    let scenario = Scenario::Capacity(talk_bench::CapacityConfig {
        pollers: 1,
        channels: 1,
        hold: Duration::from_secs(1),
    });
    let error = talk_bench::run::<Nchan>(&target, &scenario)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "bad bench configuration: only the fan-out scenario can drive a peer other than talk"
    );
}
