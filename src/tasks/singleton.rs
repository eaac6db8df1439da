//! The singleton loops, run only while this process leads (`leader::Leadership`): `run`
//! starts them (through the caller's `start`, with their own stop signal) when a term
//! begins, and stops them at once when it ends — aborted, not waited for: a former leader
//! must not finish a round. On shutdown they are asked to stop and waited for (a round in
//! progress ends cleanly), before the lease is released.
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::leader::Leadership;

struct Running {
    term: i64,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Runs `start(stop)`'s loops for every term this process leads, until `shutdown`.
pub async fn run<F>(leadership: Leadership, mut shutdown: watch::Receiver<bool>, start: F)
where
    F: Fn(watch::Receiver<bool>) -> Vec<JoinHandle<()>>,
{
    let mut role = leadership.subscribe();
    let mut running: Option<Running> = None;
    loop {
        let term = *role.borrow_and_update();
        let current = running.as_ref().map(|r| r.term);
        if current.is_some()
            && current != term
            && let Some(r) = running.take()
        {
            let _ = r.stop.send(true);
            for t in &r.tasks {
                t.abort();
            }
            for t in r.tasks {
                let _ = t.await;
            }
            tracing::info!(term = r.term, "singleton work aborted");
        }
        if let (Some(term), None) = (term, running.as_ref()) {
            let (stop, rx) = watch::channel(false);
            let tasks = start(rx);
            tracing::info!(term, loops = tasks.len(), "singleton work started");
            running = Some(Running { term, stop, tasks });
        }
        tokio::select! {
            r = role.changed() => {
                if r.is_err() {
                    break;
                }
            }
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    if let Some(r) = running {
        let _ = r.stop.send(true);
        for t in r.tasks {
            let _ = t.await;
        }
    }
}
