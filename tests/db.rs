//! What the tests see of a home's database, whichever engine holds it: [`Db`] reads rows and
//! makes the changes a test needs (an audit record edited by hand, a crash's state), on SQLite
//! (the home's file) or on PostgreSQL (the home's database in the test cluster), with the same
//! SQL — the PostgreSQL schema keeps SQLite's table and column names.
//!
//! It is a judge from the outside: it must never go through the service's own store code, and
//! it must never loosen what a test reads (a missing row, an unexpected type or a failed
//! statement stops the test, naming the SQL).

/// One value of a row or of a parameter. Integers of any width are `Int` (SQLite's INTEGER,
/// PostgreSQL's BIGINT, and the INT4 of an expression such as `length(…)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A positional parameter (`?1`, `?2`, … in the SQL, whichever the engine).
pub trait Param {
    fn value(&self) -> Value;
}

impl Param for i64 {
    fn value(&self) -> Value {
        Value::Int(*self)
    }
}

impl Param for str {
    fn value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl Param for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl Param for [u8] {
    fn value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}

impl Param for Vec<u8> {
    fn value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value {
        (**self).value()
    }
}

/// A column's value as a Rust type; the wrong type (or NULL where none is allowed) stops the
/// test.
pub trait FromValue: Sized {
    fn from_value(v: Value) -> Result<Self, Value>;
}

impl FromValue for i64 {
    fn from_value(v: Value) -> Result<Self, Value> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(other),
        }
    }
}

impl FromValue for String {
    fn from_value(v: Value) -> Result<Self, Value> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(other),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: Value) -> Result<Self, Value> {
        match v {
            Value::Bytes(b) => Ok(b),
            other => Err(other),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value) -> Result<Self, Value> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A whole row as a Rust value: one column as its type, several as a tuple.
pub trait FromRow: Sized {
    fn from_row(values: Vec<Value>, sql: &str) -> Self;
}

fn column<T: FromValue>(v: Value, i: usize, sql: &str) -> T {
    T::from_value(v).unwrap_or_else(|v| {
        panic!(
            "column {i} of `{sql}` is {v:?}, not a {}",
            std::any::type_name::<T>()
        )
    })
}

impl<T: FromValue> FromRow for T {
    fn from_row(values: Vec<Value>, sql: &str) -> Self {
        let [v]: [Value; 1] = values
            .try_into()
            .unwrap_or_else(|v: Vec<Value>| panic!("`{sql}` gives {} columns, not 1", v.len()));
        column(v, 0, sql)
    }
}

macro_rules! tuple_from_row {
    ($n:literal; $($t:ident $v:ident $i:tt),+) => {
        impl<$($t: FromValue),+> FromRow for ($($t,)+) {
            fn from_row(values: Vec<Value>, sql: &str) -> Self {
                let all: [Value; $n] = values.try_into().unwrap_or_else(|v: Vec<Value>| {
                    panic!("`{sql}` gives {} columns, not {}", v.len(), $n)
                });
                let [$($v),+] = all;
                ($(column::<$t>($v, $i, sql),)+)
            }
        }
    };
}

tuple_from_row!(2; A a 0, B b 1);
tuple_from_row!(3; A a 0, B b 1, C c 2);
tuple_from_row!(4; A a 0, B b 1, C c 2, D d 3);
tuple_from_row!(5; A a 0, B b 1, C c 2, D d 3, E e 4);

/// A connection to a home's database, the tests' own (the service may hold others).
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

/// A PostgreSQL client used from any thread, an async test's too: the client runs a runtime
/// of its own, which cannot start on a thread driving one, so every call (and the close at
/// drop) runs on a thread of its own.
pub struct PgConn(Option<Box<postgres::Client>>);

impl PgConn {
    fn with<T: Send>(&mut self, f: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
        let client = self.0.as_deref_mut().expect("a client until dropped");
        apart(move || f(client))
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            apart(move || drop(client));
        }
    }
}

/// Runs `f` on a thread of its own; its panic is the caller's.
fn apart<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

impl Db {
    /// The SQLite file of a home.
    pub fn sqlite(path: &std::path::Path) -> Db {
        Db::Sqlite(
            rusqlite::Connection::open(path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display())),
        )
    }

    /// A PostgreSQL database by its URL (without password) and the password.
    pub fn postgres(url: &str, password: &str) -> Db {
        let mut config: postgres::Config = url
            .parse()
            .unwrap_or_else(|e| panic!("the store URL {url}: {e}"));
        config.password(password);
        let client = apart(|| {
            config
                .connect(postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
        });
        Db::Postgres(PgConn(Some(Box::new(client))))
    }

    pub fn engine(&self) -> crate::Engine {
        match self {
            Db::Sqlite(_) => crate::Engine::Sqlite,
            Db::Postgres(_) => crate::Engine::Postgres,
        }
    }

    /// Every row of `sql`.
    pub fn rows<T: FromRow>(&mut self, sql: &str, params: &[&dyn Param]) -> Vec<T> {
        self.raw_rows(sql, params)
            .into_iter()
            .map(|r| T::from_row(r, sql))
            .collect()
    }

    /// The first row of `sql`, if there is one.
    pub fn optional_row<T: FromRow>(&mut self, sql: &str, params: &[&dyn Param]) -> Option<T> {
        self.raw_rows(sql, params)
            .into_iter()
            .next()
            .map(|r| T::from_row(r, sql))
    }

    /// The first row of `sql`; none stops the test.
    pub fn row<T: FromRow>(&mut self, sql: &str, params: &[&dyn Param]) -> T {
        self.optional_row(sql, params)
            .unwrap_or_else(|| panic!("no row from `{sql}`"))
    }

    /// The single integer `sql` gives (a `COUNT(*)`).
    pub fn count(&mut self, sql: &str) -> i64 {
        self.row(sql, &[])
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[&dyn Param]) -> u64 {
        let values: Vec<Value> = params.iter().map(|p| p.value()).collect();
        match self {
            Db::Sqlite(c) => {
                let n = c
                    .execute(
                        sql,
                        rusqlite::params_from_iter(values.iter().map(sqlite_value)),
                    )
                    .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
                n as u64
            }
            Db::Postgres(c) => {
                let sql = dollar_placeholders(sql);
                c.with(|c| {
                    c.execute(sql.as_str(), &pg_params(&values))
                        .unwrap_or_else(|e| panic!("`{sql}`: {e}"))
                })
            }
        }
    }

    /// Runs statements without parameters (e.g. `BEGIN`).
    pub fn batch(&mut self, sql: &str) {
        let done = match self {
            Db::Sqlite(c) => c.execute_batch(sql).map_err(|e| e.to_string()),
            Db::Postgres(c) => c.with(|c| c.batch_execute(sql).map_err(|e| e.to_string())),
        };
        done.unwrap_or_else(|e| panic!("`{sql}`: {e}"))
    }

    fn raw_rows(&mut self, sql: &str, params: &[&dyn Param]) -> Vec<Vec<Value>> {
        let values: Vec<Value> = params.iter().map(|p| p.value()).collect();
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("`{sql}`: {e}"));
                let n = st.column_count();
                let mut rows = st
                    .query(rusqlite::params_from_iter(values.iter().map(sqlite_value)))
                    .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
                let mut out = Vec::new();
                while let Some(r) = rows.next().unwrap_or_else(|e| panic!("`{sql}`: {e}")) {
                    let row = (0..n)
                        .map(|i| {
                            use rusqlite::types::ValueRef;
                            match r.get_ref(i).unwrap() {
                                ValueRef::Null => Value::Null,
                                ValueRef::Integer(i) => Value::Int(i),
                                ValueRef::Text(t) => Value::Text(
                                    String::from_utf8(t.to_vec())
                                        .unwrap_or_else(|e| panic!("column {i} of `{sql}`: {e}")),
                                ),
                                ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                                ValueRef::Real(x) => {
                                    panic!("column {i} of `{sql}` is a REAL ({x}): none is stored")
                                }
                            }
                        })
                        .collect();
                    out.push(row);
                }
                out
            }
            Db::Postgres(c) => {
                let sql = dollar_placeholders(sql);
                c.with(|c| {
                    let rows = c
                        .query(sql.as_str(), &pg_params(&values))
                        .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
                    rows.iter().map(|r| pg_row(r, &sql)).collect()
                })
            }
        }
    }
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Int(i) => V::Integer(*i),
        Value::Text(s) => V::Text(s.clone()),
        Value::Bytes(b) => V::Blob(b.clone()),
    }
}

fn pg_params(values: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| -> &(dyn postgres::types::ToSql + Sync) {
            match v {
                Value::Null => &None::<String>,
                Value::Int(i) => i,
                Value::Text(s) => s,
                Value::Bytes(b) => b,
            }
        })
        .collect()
}

fn pg_get<'a, T: postgres::types::FromSql<'a>>(
    r: &'a postgres::Row,
    i: usize,
    sql: &str,
) -> Option<T> {
    r.try_get::<_, Option<T>>(i)
        .unwrap_or_else(|e| panic!("column {i} of `{sql}`: {e}"))
}

fn pg_row(r: &postgres::Row, sql: &str) -> Vec<Value> {
    use postgres::types::Type;
    (0..r.len())
        .map(|i| {
            let ty = r.columns()[i].type_().clone();
            let v = if ty == Type::INT8 {
                pg_get::<i64>(r, i, sql).map(Value::Int)
            } else if ty == Type::INT4 {
                pg_get::<i32>(r, i, sql).map(|x| Value::Int(x.into()))
            } else if ty == Type::INT2 {
                pg_get::<i16>(r, i, sql).map(|x| Value::Int(x.into()))
            } else if ty == Type::TEXT || ty == Type::VARCHAR || ty == Type::NAME {
                pg_get::<String>(r, i, sql).map(Value::Text)
            } else if ty == Type::BYTEA {
                pg_get::<Vec<u8>>(r, i, sql).map(Value::Bytes)
            } else {
                panic!("column {i} of `{sql}` is of type {ty}, which the tests do not read")
            };
            v.unwrap_or(Value::Null)
        })
        .collect()
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N`, outside quoted text.
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::dollar_placeholders;

    #[test]
    fn placeholders_are_renumbered_outside_quotes_only() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE b = ?1 AND c IN (?2, ?12) AND d = '?3'"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $12) AND d = '?3'"
        );
        assert_eq!(dollar_placeholders("SELECT '?' || ?"), "SELECT '?' || ?");
    }
}
