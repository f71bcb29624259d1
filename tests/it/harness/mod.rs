//! The one test harness: the real server on a free loopback port with a fake Sipgate (a real
//! HTTP server) behind it, a typed test config, the service's binary and Debian's programs as
//! child processes under one guard, and one way to wait for something (`eventually`).
//!
//! A module per concern, all re-exported here, so that a test file needs only
//! `use crate::harness::*;`:
//! - `config`: the typed service config (`TestConfig`), the test token and numbers, the examples.
//! - `payloads`: the notification bodies tests post (`fixture`, `diskfull`, ...).
//! - `sipgate`: the one fake Sipgate (`FakeSipgate`), and what it received (`sent_sms`, ...).
//! - `app`: the service in-process (`TestApp`, `at` for its clock), and posting (`post_alerts`).
//! - `service`: the service's binary, as operators run it (`Service`, `service_binary`).
//! - `programs`: `ChildGuard` for every child process, `require`, Alertmanager, Prometheus.
//! - `browser`: headless chromium through chromedriver (`Browser`), screenshots, axe-core.
//! - `python`: Python with pinned packages, in a virtualenv under `target/` (`python_venv`).
//! - `redis`: `redis-server`, `redis-sentinel` and a Redis Cluster made by `redis-cli --cluster`
//!   (`Redis`, `Sentinel`, `RedisCluster`), and what they ran (`CommandStats`).
//! - `tmpfs`: a disk that fills up or turns read-only (`Tmpfs`, needs root).
//! - `wait`: `eventually`, the one way to wait, and `wait_until_ok`.
//! - `metrics`: the service's metrics page (`metrics`, `metrics_with`, ...).
//! - `log`: what the service logs (`CapturedLog` in-process, `lines_with`).
//! - `html`: the web pages as a reader sees them (`section`, `text`, `url_attributes`, ...).

mod app;
mod browser;
mod config;
mod html;
mod log;
mod metrics;
mod payloads;
mod programs;
mod python;
mod redis;
mod service;
mod sipgate;
mod tmpfs;
mod wait;

pub use app::*;
pub use browser::*;
pub use config::*;
pub use html::*;
pub use log::*;
pub use metrics::*;
pub use payloads::*;
pub use programs::*;
pub use python::*;
pub use redis::*;
pub use service::*;
pub use sipgate::*;
pub use tmpfs::*;
pub use wait::*;
