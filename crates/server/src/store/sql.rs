//! Statements built piece by piece with bound values, numbered `$1`, `$2`, … .
//!
//! sqlx's `QueryBuilder` writes `?` for every value when the database is `Any`: SQLite reads
//! that, PostgreSQL does not. Numbered placeholders are read by both, so the store builds its
//! dynamic statements here (the rest use fixed `$n` text).
//!
//! The large inserts of the writer use plain `?` on SQLite instead ([`Sql::anonymous`]): sqlx
//! binds a SQLite statement by asking the name of each of its parameters, which SQLite finds
//! by walking the list of named ones, so a batch of 3,000 `$n` values costs millions of string
//! comparisons (three quarters of the writer's time in a profile), and `?` costs none.

use std::fmt::Write as _;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Arguments as _, AssertSqlSafe, Encode, Type};

/// A statement being built: text, and the values its placeholders stand for.
pub(super) struct Sql {
    text: String,
    arguments: AnyArguments,
    count: usize,
    /// `?` for every value rather than `$n` (SQLite only; PostgreSQL needs numbers).
    anonymous: bool,
}

impl Sql {
    /// A statement starting with `text` (fixed text, never a value).
    pub(super) fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            arguments: AnyArguments::default(),
            count: 0,
            anonymous: false,
        }
    }

    /// A statement whose values are all `?`, in order: for SQLite, and only for text with no
    /// numbered placeholder of its own.
    pub(super) fn anonymous(text: impl Into<String>) -> Self {
        Self {
            anonymous: true,
            ..Self::new(text)
        }
    }

    /// Appends fixed text.
    pub(super) fn push(&mut self, text: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.text, "{text}");
        self
    }

    /// Appends a placeholder for `value`.
    pub(super) fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        // A value the driver cannot encode fails the statement when it is sent; the `Any`
        // buffer itself never refuses one.
        let _ = self.arguments.add(value);
        self.count += 1;
        if self.anonymous {
            self.text.push('?');
        } else {
            let _ = write!(self.text, "${}", self.count);
        }
        self
    }

    /// Appends values separated by `separator`.
    pub(super) fn separated(&mut self, separator: &'static str) -> Separated<'_> {
        Separated {
            sql: self,
            separator,
            first: true,
        }
    }

    /// Appends ` VALUES (…), (…)`, one group per item, filled by `row`.
    pub(super) fn push_values<I, F>(&mut self, items: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_>, I::Item),
    {
        self.push(" VALUES ");
        for (index, item) in items.into_iter().enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.push("(");
            row(self.separated(", "), item);
            self.push(")");
        }
        self
    }

    /// The statement, ready to run (the builder is left empty).
    pub(super) fn build(&mut self) -> Query<'static, Any, AnyArguments> {
        let text = std::mem::take(&mut self.text);
        let arguments = std::mem::take(&mut self.arguments);
        self.count = 0;
        // Only fixed text is ever pushed; every value is bound.
        sqlx::query_with(AssertSqlSafe(text), arguments)
    }
}

/// Values appended with a separator between them.
pub(super) struct Separated<'a> {
    sql: &'a mut Sql,
    separator: &'static str,
    first: bool,
}

impl Separated<'_> {
    /// Appends a placeholder for `value`, after the separator unless it is the first.
    pub(super) fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        if !self.first {
            self.sql.push(self.separator);
        }
        self.first = false;
        self.sql.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::Sql;

    #[test]
    fn placeholders_are_numbered_in_order_for_every_engine() {
        let mut sql = Sql::new("SELECT x FROM t WHERE a = ");
        sql.push_bind(1_i64).push(" AND b IN (");
        let mut list = sql.separated(", ");
        for value in ["p", "q", "r"] {
            list.push_bind(value.to_owned());
        }
        sql.push(")");
        assert_eq!(
            sql.text,
            "SELECT x FROM t WHERE a = $1 AND b IN ($2, $3, $4)"
        );

        let mut insert = Sql::new("INSERT INTO t (a, b)");
        insert.push_values([(1_i64, "x"), (2, "y")], |mut row, (a, b)| {
            row.push_bind(a).push_bind(b.to_owned());
        });
        assert_eq!(
            insert.text,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(insert.count, 4);

        let mut anonymous = Sql::anonymous("INSERT INTO t (a, b)");
        anonymous.push_values([(1_i64, "x"), (2, "y")], |mut row, (a, b)| {
            row.push_bind(a).push_bind(b.to_owned());
        });
        assert_eq!(anonymous.text, "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)");
        assert_eq!(anonymous.count, 4);
    }
}
