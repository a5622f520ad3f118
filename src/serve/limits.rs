//! Admission control: a bounded number of admitted requests, a smaller number of workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The server's limits and its shutdown flag.
pub struct Limits {
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
    workers: Arc<Semaphore>,
    n_workers: usize,
    /// Set on SIGTERM / Ctrl-C; realtime sessions watch it.
    pub shutdown: Shutdown,
}

/// A flag raised once when the server shuts down.
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Shutdown {
    /// Raise the flag.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once the flag is raised (at once if it already is).
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// One admitted request; dropping it frees its place.
pub struct Admission {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limits {
    /// `workers` transcriptions at once (at least 1), `max_queue` more admitted and waiting.
    pub fn new(workers: usize, max_queue: usize) -> Self {
        let workers = workers.max(1);
        Limits {
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: workers.saturating_add(max_queue),
            workers: Arc::new(Semaphore::new(workers)),
            n_workers: workers,
            shutdown: Shutdown(Arc::new(watch::channel(false).0)),
        }
    }

    /// Admit one more request, or `None` when `workers + max_queue` are already admitted.
    pub fn try_admit(&self) -> Option<Admission> {
        let mut cur = self.admitted.load(Ordering::SeqCst);
        loop {
            if cur >= self.max_admitted {
                return None;
            }
            match self
                .admitted
                .compare_exchange(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    return Some(Admission {
                        admitted: self.admitted.clone(),
                    });
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Wait for a free worker. The permit is moved into the blocking computation, so a worker
    /// stays taken until its computation ends (even after its request timed out).
    pub async fn worker(&self) -> OwnedSemaphorePermit {
        self.workers
            .clone()
            .acquire_owned()
            .await
            .expect("the worker semaphore is never closed")
    }

    /// Requests admitted now (running or waiting).
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::SeqCst)
    }

    /// Most requests admitted at once.
    pub fn max_admitted(&self) -> usize {
        self.max_admitted
    }

    /// Workers busy now.
    pub fn busy_workers(&self) -> usize {
        self.n_workers - self.workers.available_permits()
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.n_workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_is_bounded_and_released() {
        let l = Limits::new(1, 1);
        let a = l.try_admit().unwrap();
        let b = l.try_admit().unwrap();
        assert!(l.try_admit().is_none());
        assert_eq!(l.admitted(), 2);
        drop(a);
        let c = l.try_admit().unwrap();
        assert!(l.try_admit().is_none());
        drop((b, c));
        assert_eq!(l.admitted(), 0);
    }
}
