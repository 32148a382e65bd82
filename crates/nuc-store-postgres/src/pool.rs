//! The read connections: a few, made on demand, each kept with its statement cache. A
//! connection that failed is dropped, and with it every idle one (after a restart of the
//! server they are all dead), so the next read connects afresh: when the database comes back,
//! reads work again by themselves.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nuc_store::StoreError;

use crate::{Cache, Connector, DbError, Sql, is_connection_error};

struct Conn {
    client: postgres::Client,
    cache: Cache,
}

struct State {
    idle: Vec<Conn>,
    /// Connections in existence, idle or lent.
    open: usize,
}

pub(crate) struct Pool {
    connector: Arc<Connector>,
    size: usize,
    state: Mutex<State>,
    freed: Condvar,
}

/// How long a read waits for a connection when all are lent.
const WAIT: Duration = Duration::from_secs(30);

impl Drop for Pool {
    fn drop(&mut self) {
        crate::drop_off_runtime(std::mem::take(&mut self.lock().idle));
    }
}

impl Pool {
    pub(crate) fn new(connector: Arc<Connector>, size: usize) -> Self {
        Self {
            connector,
            size,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a list and a count, each changed in one step under the lock: a panic
        // elsewhere cannot leave it half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection, and whether it was used before (and so may have died meanwhile).
    fn checkout(&self) -> Result<(Conn, bool), DbError> {
        let mut st = self.lock();
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok((c, true));
            }
            if st.open < self.size {
                st.open += 1;
                drop(st);
                return match self.connector.connect() {
                    Ok(client) => Ok((
                        Conn {
                            client,
                            cache: Cache::new(),
                        },
                        false,
                    )),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, timeout) = self
                .freed
                .wait_timeout(st, WAIT)
                .unwrap_or_else(|p| p.into_inner());
            st = next;
            if timeout.timed_out() && st.idle.is_empty() && st.open >= self.size {
                return Err(DbError::Store(StoreError::Unavailable(format!(
                    "all {} read connections stayed busy for {}s",
                    self.size,
                    WAIT.as_secs()
                ))));
            }
        }
    }

    fn checkin(&self, c: Conn, broken: bool) {
        let mut st = self.lock();
        if broken || c.client.is_closed() {
            st.open -= 1;
            // The others idle since before the failure are most likely dead too.
            let stale = st.idle.len();
            st.idle.clear();
            st.open -= stale;
        } else {
            st.idle.push(c);
        }
        drop(st);
        self.freed.notify_all();
    }

    /// Runs `f` on a connection. A read that fails because a connection used before had died
    /// is run once more on a new connection: reads change nothing, so this is safe, and the
    /// first read after the database came back does not fail for a connection of the past.
    pub(crate) fn read<T>(
        &self,
        mut f: impl FnMut(&mut Sql<'_, postgres::Client>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut retried = false;
        loop {
            let (mut c, reused) = self.checkout()?;
            let outcome = f(&mut Sql {
                c: &mut c.client,
                cache: &mut c.cache,
                head: None,
            });
            match outcome {
                Err(DbError::Pg(e)) if is_connection_error(&e) => {
                    self.checkin(c, true);
                    if reused && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(DbError::Pg(e));
                }
                other => {
                    self.checkin(c, false);
                    return other;
                }
            }
        }
    }
}
