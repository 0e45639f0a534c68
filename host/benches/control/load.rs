//! The measurements under load: many concurrent status requests, and restarts while the control
//! plane is busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use pilot_host::ctl::{Client, Target};
use tokio::task::JoinSet;

use super::{now_ns, percentile, pid, show, stats, Env, Host};

const CLIENTS: usize = 200;

/// 200 clients, each sending `per_client` requests one after the other; returns every latency in ms.
async fn hammer(client: &Client, per_client: usize) -> Vec<f64> {
    let mut tasks = JoinSet::new();
    for _ in 0..CLIENTS {
        let client = client.clone();
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                let (status, _) = client
                    .call(hyper::Method::GET, "/v1/processes", None)
                    .await
                    .unwrap();
                assert!(status.is_success());
                out.push(t.elapsed().as_secs_f64() * 1e3);
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    all
}

/// A bare hyper server (axum, one route) answering `body` on a unix socket, on its own 2-thread
/// runtime like pilot-host's.
fn bare_server(socket: std::path::PathBuf, body: Arc<[u8]>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            let body = body.clone();
            let app = axum::Router::new().route(
                "/v1/processes",
                get(move || {
                    let body = body.clone();
                    async move {
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            body.to_vec(),
                        )
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    })
}

/// `GET /v1/processes` on 20 processes, p50 and p99 with 200 concurrent clients.
pub async fn status_under_200_clients(env: &Env, per_client: usize) {
    let manifest = env.manifest("status", 20);
    let host = Host::run(env, &manifest);
    let client = host.client();
    super::wait("20 children run", || {
        std::fs::read_to_string(manifest.with_extension("starts"))
            .is_ok_and(|s| s.lines().count() >= 20)
    });
    let (_, body) = client
        .call(hyper::Method::GET, "/v1/processes", None)
        .await
        .unwrap();
    let ours = hammer(&client, per_client).await;
    drop(host);
    let socket = env.scratch.join("bare.sock");
    let _server = bare_server(socket.clone(), Arc::from(body.to_vec()));
    super::wait("the bare server answers", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    let base = hammer(&Client::new(Target::Unix(socket)), per_client).await;
    for p in [50.0, 99.0] {
        let (o, b) = (percentile(&ours, p), percentile(&base, p));
        println!(
            "| `GET /v1/processes` (20 processes, {} bytes), 200 concurrent clients, p{p} | {o:.2} ms ({} requests) | bare hyper server, same bytes: {b:.2} ms | {:.2}× |",
            body.len(),
            ours.len(),
            o / b
        );
    }
}

/// Background load on the control plane: 50 event-stream clients and 200 status requests a second.
fn load(socket: &std::path::Path) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let client = Client::new(Target::Unix(socket.to_path_buf()));
        tasks.spawn(async move {
            let response = client
                .send(hyper::Method::GET, "/v1/events", None)
                .await
                .unwrap();
            let _ = pilot_host::ctl::read_events(response.into_body(), |_, _| true).await;
        });
    }
    let client = Client::new(Target::Unix(socket.to_path_buf()));
    tasks.spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(5));
        let mut inflight = JoinSet::new();
        loop {
            ticker.tick().await;
            let client = client.clone();
            inflight.spawn(async move {
                let _ = client.call(hyper::Method::GET, "/v1/processes", None).await;
            });
            while inflight.try_join_next().is_some() {}
        }
    });
    tasks
}

/// SIGKILL of the child until its replacement runs (its own start time), `n` times.
async fn kills(client: &Client, starts: &std::path::Path, n: usize) -> Vec<f64> {
    let count = || {
        std::fs::read_to_string(starts)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let last = || {
        let text = std::fs::read_to_string(starts).unwrap();
        text.lines()
            .last()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse::<u128>()
            .unwrap()
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let before = count();
        let victim = pid(client, "p0").await.unwrap();
        // Past min_uptime, so the restart is immediate.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let t0 = now_ns();
        // SAFETY: kill(2) of the child pilot-host reported; it is ours, started by our pilot-host.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while count() <= before {
            assert!(Instant::now() < deadline, "no restart within 10 s");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        out.push((last() - t0) as f64 / 1e6);
    }
    out
}

/// Restart latency quiet and under load, alternating so both see the same machine.
pub async fn restart_under_load(env: &Env, rounds: usize) {
    let manifest = env.manifest("restart", 1);
    let starts = manifest.with_extension("starts");
    let host = Host::run(env, &manifest);
    let client = host.client();
    super::wait("the child runs", || {
        std::fs::read_to_string(&starts).is_ok()
    });
    let (mut quiet, mut busy) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        quiet.extend(kills(&client, &starts, 5).await);
        let mut background = load(&host.socket);
        tokio::time::sleep(Duration::from_millis(300)).await;
        busy.extend(kills(&client, &starts, 5).await);
        background.abort_all();
        while background.join_next().await.is_some() {}
    }
    let (q, _, _) = stats(quiet.clone());
    let (b_text, b) = show(busy);
    let (q_text, _) = show(quiet);
    println!(
        "| restart after SIGKILL under 200 status requests/s + 50 event streams | {b_text} | quiet: {q_text} | {:.2}× (target ≤ 1.2×) |",
        b / q
    );
}
