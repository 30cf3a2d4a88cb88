//! A real registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on 127.0.0.1 at a free port with its storage in a temporary
//! directory, optionally with htpasswd Basic auth or the `redirect` storage
//! middleware (blob GETs answered 307 to a static file server over the
//! storage directory). `.ci/run` installs the package.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::httpkit::FileServer;

/// How to run the registry.
#[derive(Default, Clone)]
pub struct Options {
    /// Basic auth with this user and password (htpasswd, bcrypt).
    pub basic: Option<(String, String)>,
    /// Blob GETs redirect to a file server over the storage.
    pub redirect: bool,
}

/// A running registry, killed when dropped.
pub struct Registry {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub files: Option<FileServer>,
    config: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The registry binary, or a message saying how to get it.
pub fn binary() -> Result<PathBuf, String> {
    for p in ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    Err("docker-registry not found (apt install docker-registry; .ci/run does)".into())
}

impl Registry {
    pub fn start(opts: Options) -> Registry {
        let bin = binary().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
            storage.display()
        );
        let files = if opts.redirect {
            let fs = FileServer::start(storage.clone());
            cfg.push_str(&format!(
                "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: http://127.0.0.1:{}/\n",
                fs.port
            ));
            Some(fs)
        } else {
            None
        };
        cfg.push_str(&format!(
            "http:\n  addr: 127.0.0.1:{port}\n  secret: obd-test\n"
        ));
        if let Some((u, p)) = &opts.basic {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let hp = dir.path().join("htpasswd");
            std::fs::write(&hp, out.stdout).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: obd-test\n    path: {}\n",
                hp.display()
            ));
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, cfg).unwrap();
        let mut r = Registry {
            port,
            dir,
            child: None,
            files,
            config,
        };
        r.launch(&bin);
        r
    }

    fn launch(&mut self, bin: &Path) {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start: {}",
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `docker://127.0.0.1:PORT/REPO`.
    pub fn image(&self, repo: &str) -> String {
        format!("docker://{}/{repo}", self.host())
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch(&binary().unwrap());
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}
