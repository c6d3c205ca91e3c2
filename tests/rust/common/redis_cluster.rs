//! A Redis Cluster of the test's own: three masters on free loopback ports, no
//! replicas, made by `redis-cli --cluster create` in a temporary directory.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::links::{free_port, wait_listening};

pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "wasio-redis-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for port in &ports {
            let p = port.to_string();
            let child = Command::new("redis-server")
                .current_dir(&dir)
                .args([
                    "--port",
                    &p,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(format!("nodes-{port}.conf"))
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (tests/run installs it)");
            children.push(child);
            wait_listening(*port, "redis-server");
        }
        let cluster = RedisCluster {
            ports,
            children,
            dir,
        };
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let made = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(made.success(), "redis-cli --cluster create failed");
        for port in &cluster.ports {
            cluster.wait_ok(*port);
        }
        cluster
    }

    /// Waits until the node on `port` says the cluster is up (every slot served).
    fn wait_ok(&self, port: u16) {
        for _ in 0..250 {
            let out = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                return;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        panic!("the cluster never came up on {port}");
    }

    /// A `redis-cluster://` URL that seeds the client with the first node.
    pub fn url(&self) -> String {
        format!("redis-cluster://127.0.0.1:{}", self.ports[0])
    }

    /// A plain `redis-cli SUBSCRIBE channel` connected to the node on `port`.
    pub fn subscriber_on(&self, port: u16, channel: &str) -> Child {
        Command::new("redis-cli")
            .args(["-p", &port.to_string(), "subscribe", channel])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-cli")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
