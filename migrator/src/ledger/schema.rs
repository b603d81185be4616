//! Whether a ledger database's schema is the one this build expects: the versions of the
//! migrations applied to it (sqlx's `_sqlx_migrations` table) against those compiled in. Only
//! compares; applying them stays with each backend's `open`.

/// The migration versions of one ledger database and of this build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaVersions {
    /// Compiled into this build (`migrations/<backend>`).
    pub known: Vec<i64>,
    /// Applied to the database; empty before the first writing run.
    pub applied: Vec<i64>,
}

impl SchemaVersions {
    /// `applied` (read from the database's `_sqlx_migrations`) against what `migrator` holds.
    pub fn of(migrator: &sqlx::migrate::Migrator, applied: Vec<i64>) -> Self {
        let known = migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .collect();
        SchemaVersions { known, applied }
    }

    /// Known but not applied: the next writing run (`claim`, `import`, `retry`) applies them.
    pub fn pending(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .known
            .iter()
            .filter(|k| !self.applied.contains(k))
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Applied but unknown here: the database was upgraded by a newer bbb-migrate, which this
    /// one must not write to (sqlx refuses to run its migrations then).
    pub fn unknown(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .applied
            .iter()
            .filter(|a| !self.known.contains(a))
            .copied()
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_and_unknown_versions_are_told_apart() {
        let v = SchemaVersions {
            known: vec![1, 2],
            applied: vec![1],
        };
        assert_eq!((v.pending(), v.unknown()), (vec![2], vec![]));
        let v = SchemaVersions {
            known: vec![1, 2],
            applied: vec![1, 2, 3],
        };
        assert_eq!((v.pending(), v.unknown()), (vec![], vec![3]));
        let fresh = SchemaVersions {
            known: vec![1, 2],
            applied: vec![],
        };
        assert_eq!(fresh.pending(), vec![1, 2]);
    }
}
